"""Generic importers: a folder of audio files and a CSV manifest with labels and splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerlab.data.importers import import_dataset
from layerlab.data.manifest import read_manifest
from layerlab.data.shards import read_metadata, read_quarantine


@pytest.fixture()
def folder_tree(tmp_path: Path, import_audio, import_bad_files) -> Path:
    root = tmp_path / "recordings"
    import_audio.write(root / "alice" / "a1.wav", 0, sample_rate=44_100)
    import_audio.write(root / "alice" / "session2" / "a2.flac", 1)
    import_audio.write(root / "bob" / "b1.wav", 2, sample_rate=8_000)
    import_audio.write(root / "loose.wav", 3)
    corrupt, empty = import_bad_files
    corrupt(root / "bob" / "b2.wav")
    empty(root / "bob" / "b3.wav")
    (root / "bob" / "notes.txt").write_text("x")
    return root


def test_folder_speakers_resampling_and_quarantine(folder_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = import_dataset("folder", str(folder_tree), str(out))
    meta = {r["id"]: r for r in read_metadata(str(out)).to_pylist()}
    assert {k: v["speaker"] for k, v in meta.items()} == {"alice-a1": "alice", "alice-session2-a2": "session2", "bob-b1": "bob", "loose": ""}
    assert meta["alice-a1"]["num_samples"] == 16_000  # 1 s at 44.1 kHz resampled to 16 kHz
    assert meta["bob-b1"]["num_samples"] == 16_000
    q = {r["source"]: r["reason"] for r in read_quarantine(str(out)).to_pylist()}
    assert q["bob/b2.wav"].startswith("undecodable audio")
    assert q["bob/b3.wav"] == "empty file (0 bytes)"
    assert q["bob/notes.txt"].startswith("unexpected file: not an audio file")
    assert len(q) == 3 and summary.kept == 4
    assert read_manifest(str(out)).tasks == {}  # no labels: nothing to declare
    top = import_dataset("folder", str(folder_tree), str(tmp_path / "top"), speaker_from="top")
    assert top.kept == 4
    assert {r["speaker"] for r in read_metadata(str(tmp_path / "top")).to_pylist()} == {"alice", "bob", ""}


def test_csv_manifest_labels_splits_and_quarantine(tmp_path: Path, import_audio, import_bad_files) -> None:
    root = tmp_path / "corpus"
    import_audio.write(root / "clips" / "s1" / "x.wav", 0)
    import_audio.write(root / "clips" / "s2" / "y.wav", 1)
    import_audio.write(root / "clips" / "s2" / "z.wav", 2)
    import_audio.write(tmp_path / "elsewhere" / "abs.wav", 3)
    corrupt, _ = import_bad_files
    corrupt(root / "clips" / "s1" / "bad.wav")
    (root / "manifest.csv").write_text(
        "path,id,speaker,transcript,split,emotion,split_ks,ks\n"
        "clips/s1/x.wav,utt-x,spk1,hello world,train,neu,,\n"
        "clips/s2/y.wav,,,,dev,ang,test,yes\n"
        "clips/s2/z.wav,,,,,,,no\n"
        f"{tmp_path / 'elsewhere' / 'abs.wav'},abs,,,test,,,\n"
        "clips/s1/bad.wav,bad,,,,,,\n"
        "clips/s3/missing.wav,gone,,,,,,\n"
        ",,,,,,,\n"
        "clips/s2,a-directory,,,,,,\n"
    )
    out = tmp_path / "out"
    summary = import_dataset("csv", str(root / "manifest.csv"), str(out))
    meta = {r["id"]: r for r in read_metadata(str(out)).to_pylist()}
    assert sorted(meta) == ["abs", "clips-s2-y", "clips-s2-z", "utt-x"]
    x = meta["utt-x"]
    assert x["speaker"] == "spk1" and x["transcript"] == "hello world"
    assert dict(x["labels"]) == {"emotion": "neu"} and dict(x["splits"]) == {"emotion": "train", "asr": "train"}
    y = meta["clips-s2-y"]
    assert y["speaker"] == "s2" and y["transcript"] is None  # empty speaker cell: parent folder
    assert dict(y["labels"]) == {"emotion": "ang", "ks": "yes"}
    assert dict(y["splits"]) == {"emotion": "dev", "ks": "test"}
    assert dict(meta["clips-s2-z"]["splits"]) == {} and dict(meta["clips-s2-z"]["labels"]) == {"ks": "no"}
    assert dict(meta["abs"]["splits"]) == {"all": "test"} and meta["abs"]["speaker"] == "elsewhere"
    q = {r["source"]: r["reason"] for r in read_quarantine(str(out)).to_pylist()}
    assert q["clips/s1/bad.wav"].startswith("undecodable audio")
    assert q["clips/s3/missing.wav"] == "missing file: listed in manifest.csv:7 but not found"
    assert q["manifest.csv:8"] == "missing path: empty 'path' cell"
    assert q["clips/s2"].startswith("unreadable file: IsADirectoryError")  # OSError other than not-found
    assert len(q) == 4 and summary.kept == 4
    tasks = read_manifest(str(out)).tasks  # declared from the label/split keys the rows carry
    assert set(tasks) == {"emotion", "ks", "asr"} and tasks["ks"].classes == {"ks": ["no", "yes"]} and tasks["ks"].split_key == "ks"
    assert tasks["asr"].kind == "transcription"


def test_csv_manifest_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("file,speaker\na.wav,s\n")
    with pytest.raises(ValueError, match=r"m\.csv: missing column\(s\) \['path'\]"):
        import_dataset("csv", str(tmp_path / "m.csv"), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="takes the CSV file itself"):
        import_dataset("csv", str(tmp_path), str(tmp_path / "out"))

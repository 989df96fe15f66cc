"""LibriSpeech importer on a tree laid out like the release and on the shared real excerpt."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from layerlab.data.importers import import_dataset
from layerlab.data.manifest import read_manifest
from layerlab.data.shards import iter_utterances, read_metadata, read_quarantine

SPEAKERS_TXT = """; Some pipe(|) separated metadata about all LibriVox readers
;ID  |SEX| SUBSET           |MINUTES| NAME
84   | F | dev-clean        | 8.02  | Christie Nowak
103  | F | train-clean-100  | 25.00 | Karen Savage
1089 | M | test-clean       | 16.23 | Lisa Lloyd
"""


def _quarantine(out: Path) -> dict[str, str]:
    return {r["source"]: r["reason"] for r in read_quarantine(str(out)).to_pylist()}


def _chapter(root: Path, subset: str, spk: str, chap: str, n: int, audio, first_clip: int) -> list[str]:
    d = root / subset / spk / chap
    lines = []
    for u in range(n):
        uid = f"{spk}-{chap}-{u:04d}"
        audio.write(d / f"{uid}.flac", first_clip + u, seconds=0.8)
        lines.append(f"{uid} WORDS OF UTTERANCE {u} IN CHAPTER {chap}")
    (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return lines


@pytest.fixture()
def librispeech_tree(tmp_path: Path, import_audio, import_bad_files) -> Path:
    root = tmp_path / "LibriSpeech"
    root.mkdir()
    (root / "SPEAKERS.TXT").write_text(SPEAKERS_TXT)
    (root / "README.TXT").write_text("LibriSpeech ASR corpus\n")
    _chapter(root, "dev-clean", "84", "121123", 3, import_audio, 0)
    _chapter(root, "train-clean-100", "103", "1240", 4, import_audio, 3)
    _chapter(root, "test-clean", "1089", "134686", 3, import_audio, 7)
    corrupt, empty = import_bad_files
    chap = root / "test-clean" / "1089" / "134686"
    # bad inputs inside the tree
    corrupt(chap / "1089-134686-0001.flac")  # replaces a good file: undecodable
    empty(chap / "1089-134686-0002.flac")
    with open(chap / "1089-134686.trans.txt", "a") as f:  # listed but missing
        f.write("1089-134686-0009 THIS ONE HAS NO AUDIO\n")
    (chap / "notes.txt").write_text("scratch\n")  # unexpected
    import_audio.write(chap / "1090-134686-0000.flac", 11)  # name does not match its folder
    os.symlink(chap / "does-not-exist.flac", chap / "1089-134686-0003.flac")  # unreadable
    return root


def test_librispeech_release_layout(librispeech_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = import_dataset("librispeech", str(librispeech_tree), str(out))
    meta = {r["id"]: r for r in read_metadata(str(out)).to_pylist()}
    assert sorted(meta) == ["103-1240-0000", "103-1240-0001", "103-1240-0002", "103-1240-0003", "1089-134686-0000", "84-121123-0000", "84-121123-0001", "84-121123-0002"]
    assert dict(meta["84-121123-0001"]["splits"]) == {"asr": "dev", "pr": "dev"}
    assert dict(meta["103-1240-0000"]["splits"]) == {"asr": "train", "pr": "train"}
    assert dict(meta["1089-134686-0000"]["splits"]) == {"asr": "test", "pr": "test"}
    assert dict(meta["1089-134686-0000"]["labels"]) == {"sid": "1089", "sex": "M"}
    assert meta["103-1240-0002"]["speaker"] == "103"
    assert meta["103-1240-0002"]["transcript"] == "WORDS OF UTTERANCE 2 IN CHAPTER 1240"
    chap = "test-clean/1089/134686"
    q = _quarantine(out)
    assert q[f"{chap}/1089-134686-0001.flac"].startswith("undecodable audio")
    assert q[f"{chap}/1089-134686-0002.flac"] == "empty file (0 bytes)"
    assert q[f"{chap}/1089-134686-0009.flac"] == "missing file: listed in 1089-134686.trans.txt but not found"
    assert q[f"{chap}/notes.txt"].startswith("unexpected file")
    assert q[f"{chap}/1090-134686-0000.flac"].startswith("unexpected file: name does not match its folder")
    assert q[f"{chap}/1089-134686-0003.flac"].startswith("unreadable file")
    assert len(q) == 6 and summary.quarantined == 6 and summary.kept == 8
    assert summary.reasons["unexpected file"] == 2
    m = read_manifest(str(out))
    assert m.extra["speakers"]["84"] == {"sex": "F", "subset": "dev-clean"}
    assert (m.tasks["asr"].kind, m.tasks["asr"].label_keys, m.tasks["asr"].split_key) == ("transcription", ["transcript"], "asr")
    assert m.tasks["sid"].label_keys == ["sid"]


def test_librispeech_single_subset_folder_uses_its_name(librispeech_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = import_dataset("librispeech", str(librispeech_tree / "dev-clean"), str(out))
    meta = read_metadata(str(out)).to_pylist()
    assert summary.kept == 3 and summary.quarantined == 0
    assert {dict(r["splits"])["asr"] for r in meta} == {"dev"}
    assert {dict(r["labels"])["sex"] for r in meta} == {"F"}  # SPEAKERS.TXT found in the parent


def test_librispeech_bad_metadata_names_the_file(tmp_path: Path, import_audio) -> None:
    root = tmp_path / "LibriSpeech"
    import_audio.write(root / "dev-clean" / "84" / "121123" / "84-121123-0000.flac", 0)
    (root / "dev-clean" / "84" / "121123" / "84-121123.trans.txt").write_text("garbage-line without id\n")
    with pytest.raises(ValueError, match=r"84-121123\.trans\.txt:1"):
        import_dataset("librispeech", str(root), str(tmp_path / "out"))
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_librispeech_shared_excerpt(librispeech_excerpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "excerpt"
    summary = import_dataset("librispeech", str(librispeech_excerpt), str(out))
    files = sorted(librispeech_excerpt.glob("*/*.flac"))
    seconds = sum(sf.info(f).frames for f in files) / 16_000
    assert (summary.kept, summary.quarantined, summary.shards) == (50, 0, 1)
    assert summary.audio_seconds == pytest.approx(seconds, abs=1e-3)
    meta = read_metadata(str(out)).to_pylist()
    assert {r["speaker"] for r in meta} == {"367", "533", "1688", "1998", "2033"}
    sex = {r["speaker"]: dict(r["labels"])["sex"] for r in meta}
    assert sex == {"367": "F", "533": "F", "1688": "M", "1998": "F", "2033": "M"}
    assert {tuple(sorted(dict(r["splits"]).values())) for r in meta} == {("test", "test")}
    assert all(r["transcript"] is None for r in meta)
    # audio survives bit-exactly (16-bit FLAC in, 16 kHz: no resampling, no gain)
    first = next(iter_utterances(str(out)))
    original, _ = sf.read(librispeech_excerpt / first.speaker / f"{first.id}.flac", dtype="float32")
    np.testing.assert_array_equal(first.wav, original)

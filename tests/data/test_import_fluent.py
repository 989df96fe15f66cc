"""Fluent Speech Commands importer: split CSVs, IC slot labels, unlisted and missing wavs."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerlab.data.importers import import_dataset
from layerlab.data.manifest import read_manifest
from layerlab.data.shards import read_metadata, read_quarantine

HEADER = ",path,speakerId,transcription,action,object,location\n"
ROWS = {
    "train_data.csv": [
        ("2BqVo8kVB2Skwgyb", "0a3129c0-4474-11e9-a9a5-5dbec3b8816a", "Change language", "change language", "none", "none"),
        ("2BqVo8kVB2Skwgyb", "0ee42a80-4474-11e9-a9a5-5dbec3b8816a", "Turn on the lights in the kitchen", "activate", "lights", "kitchen"),
        ("4BrX8aDqK2cLZRYl", "1a2b3c4d-4474-11e9-a9a5-5dbec3b8816a", "Resume", "activate", "music", "none"),
    ],
    "valid_data.csv": [
        ("4BrX8aDqK2cLZRYl", "2b3c4d5e-4474-11e9-a9a5-5dbec3b8816a", "Volume up, please", "increase", "volume", "none"),
        ("4BrX8aDqK2cLZRYl", "3c4d5e6f-4474-11e9-a9a5-5dbec3b8816a", "Lights off", "deactivate", "lights", "none"),  # missing wav
    ],
    "test_data.csv": [
        ("5o9BvRGEGvhaeBwA", "4d5e6f70-4474-11e9-a9a5-5dbec3b8816a", "Bring me my shoes", "bring", "shoes", "none"),
        ("5o9BvRGEGvhaeBwA", "5e6f7081-4474-11e9-a9a5-5dbec3b8816a", "Heat up the bedroom", "increase", "heat", "bedroom"),  # corrupt
    ],
}


def _csv(rows) -> str:
    lines = [HEADER]
    for i, (spk, stem, text, action, obj, loc) in enumerate(rows):
        text = f'"{text}"' if "," in text else text
        lines.append(f"{i},wavs/speakers/{spk}/{stem}.wav,{spk},{text},{action},{obj},{loc}\n")
    return "".join(lines)


@pytest.fixture()
def fsc_tree(tmp_path: Path, import_audio, import_bad_files) -> Path:
    top = tmp_path / "download"
    root = top / "fluent_speech_commands_dataset"
    (root / "data").mkdir(parents=True)
    i = 0
    for name, rows in ROWS.items():
        (root / "data" / name).write_text(_csv(rows))
        for spk, stem, *_ in rows:
            if stem.startswith("3c4d"):
                continue  # listed but missing
            import_audio.write(root / "wavs" / "speakers" / spk / f"{stem}.wav", i, seconds=1.5)
            i += 1
    corrupt, _ = import_bad_files
    corrupt(root / "wavs" / "speakers" / "5o9BvRGEGvhaeBwA" / "5e6f7081-4474-11e9-a9a5-5dbec3b8816a.wav")
    import_audio.write(root / "wavs" / "speakers" / "5o9BvRGEGvhaeBwA" / "ffffffff-unlisted.wav", 9)  # unexpected
    (root / "data" / "speaker_demographics.csv").write_text("speakerId,Self-reported fluency level ,First Language spoken\n")
    (root / "readme.md").write_text("FSC\n")
    return top


def test_fluent_labels_splits_and_quarantine(fsc_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = import_dataset("fluent", str(fsc_tree), str(out))  # the folder holding the dataset folder
    meta = {r["id"]: r for r in read_metadata(str(out)).to_pylist()}
    assert len(meta) == 5 and summary.kept == 5
    r = meta["2BqVo8kVB2Skwgyb_0ee42a80-4474-11e9-a9a5-5dbec3b8816a"]
    assert dict(r["labels"]) == {"ic_action": "activate", "ic_object": "lights", "ic_location": "kitchen", "ic": "activate|lights|kitchen"}
    assert r["transcript"] == "Turn on the lights in the kitchen" and r["speaker"] == "2BqVo8kVB2Skwgyb"
    assert dict(r["splits"]) == {"ic": "train"}
    v = meta["4BrX8aDqK2cLZRYl_2b3c4d5e-4474-11e9-a9a5-5dbec3b8816a"]
    assert v["transcript"] == "Volume up, please" and dict(v["splits"]) == {"ic": "dev"}
    assert dict(meta["5o9BvRGEGvhaeBwA_4d5e6f70-4474-11e9-a9a5-5dbec3b8816a"]["splits"]) == {"ic": "test"}
    q = {r["source"]: r["reason"] for r in read_quarantine(str(out)).to_pylist()}
    spk = "wavs/speakers"
    assert q[f"{spk}/4BrX8aDqK2cLZRYl/3c4d5e6f-4474-11e9-a9a5-5dbec3b8816a.wav"] == "missing file: listed in data/valid_data.csv:3 but not found"
    assert q[f"{spk}/5o9BvRGEGvhaeBwA/5e6f7081-4474-11e9-a9a5-5dbec3b8816a.wav"].startswith("undecodable audio")
    assert q[f"{spk}/5o9BvRGEGvhaeBwA/ffffffff-unlisted.wav"] == "unexpected file: not listed in any data/*_data.csv"
    assert len(q) == 3
    ic = read_manifest(str(out)).tasks["ic"]
    assert (ic.kind, ic.label_keys, ic.split_key) == ("utterance_classification", ["ic_action", "ic_object", "ic_location"], "ic")


def test_fluent_csv_without_required_column_names_the_file(fsc_tree: Path, tmp_path: Path) -> None:
    csv = fsc_tree / "fluent_speech_commands_dataset" / "data" / "test_data.csv"
    csv.write_text(",path,speakerId,transcription,action,object\n")
    with pytest.raises(ValueError, match=r"test_data\.csv: missing column\(s\) \['location'\]"):
        import_dataset("fluent", str(fsc_tree / "fluent_speech_commands_dataset"), str(tmp_path / "out"))

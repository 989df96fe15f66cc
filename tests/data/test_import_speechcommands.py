"""Speech Commands v0.01 importer: 12-class KS mapping, list-based splits, silence crops."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from layerlab.data.importers import import_dataset
from layerlab.data.manifest import read_manifest
from layerlab.data.shards import read_metadata, read_quarantine

FILES = {
    "yes": ["0a7c2a8d_nohash_0", "0a7c2a8d_nohash_1", "1b4c9b89_nohash_0"],
    "no": ["0a7c2a8d_nohash_0", "2c6d3924_nohash_0"],
    "stop": ["1b4c9b89_nohash_0"],
    "bed": ["2c6d3924_nohash_0", "3d53244b_nohash_0"],
    "marvin": ["3d53244b_nohash_0"],
}


@pytest.fixture()
def sc_tree(tmp_path: Path, import_audio, import_bad_files) -> Path:
    root = tmp_path / "speech_commands_v0.01"
    i = 0
    for word, stems in FILES.items():
        for stem in stems:
            import_audio.write(root / word / f"{stem}.wav", i, seconds=1.0)
            i += 1
    noise = np.random.default_rng(0).normal(0, 0.1, 16_000 * 10 + 5_000).astype(np.float32)
    (root / "_background_noise_").mkdir()
    sf.write(root / "_background_noise_" / "white_noise.wav", noise, 16_000, subtype="PCM_16")
    (root / "_background_noise_" / "README.md").write_text("noise files\n")
    corrupt, empty = import_bad_files
    corrupt(root / "go" / "4e5f6a7b_nohash_0.wav")
    empty(root / "up" / "5f6a7b8c_nohash_0.wav")
    empty(root / "_background_noise_" / "dude_miaowing.wav")
    (root / "yes" / "notes.txt").write_text("x")  # unexpected
    (root / "validation_list.txt").write_text("no/2c6d3924_nohash_0.wav\nbed/3d53244b_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/1b4c9b89_nohash_0.wav\nleft/9a9a9a9a_nohash_0.wav\n")  # left/... is missing
    (root / "README.md").write_text("Speech Commands\n")
    (root / "LICENSE").write_text("CC-BY-4.0\n")
    return root


def test_speechcommands_labels_splits_silence_and_quarantine(sc_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = import_dataset("speechcommands", str(sc_tree), str(out))
    meta = {r["id"]: r for r in read_metadata(str(out)).to_pylist()}
    words = {k: v for k, v in meta.items() if not k.startswith("_silence_")}
    assert len(words) == 9
    assert dict(meta["bed_2c6d3924_nohash_0"]["labels"]) == {"ks": "_unknown_", "word": "bed"}
    assert dict(meta["marvin_3d53244b_nohash_0"]["labels"])["ks"] == "_unknown_"
    assert dict(meta["stop_1b4c9b89_nohash_0"]["labels"])["ks"] == "stop"
    assert meta["yes_0a7c2a8d_nohash_1"]["speaker"] == "0a7c2a8d"
    assert dict(meta["no_2c6d3924_nohash_0"]["splits"]) == {"ks": "dev"}
    assert dict(meta["bed_3d53244b_nohash_0"]["splits"]) == {"ks": "dev"}
    assert dict(meta["yes_1b4c9b89_nohash_0"]["splits"]) == {"ks": "test"}
    assert dict(meta["yes_0a7c2a8d_nohash_0"]["splits"]) == {"ks": "train"}
    silence = {k: v for k, v in meta.items() if k.startswith("_silence_")}
    assert sorted(silence) == [f"_silence__white_noise_{k:03d}" for k in range(10)]  # 10.3 s -> 10 crops
    assert all(v["num_samples"] == 16_000 and dict(v["labels"])["ks"] == "_silence_" for v in silence.values())
    assert Counter(dict(v["splits"])["ks"] for v in silence.values()) == {"train": 8, "dev": 1, "test": 1}
    assert dict(silence["_silence__white_noise_008"]["splits"]) == {"ks": "dev"}

    q = {r["source"]: r["reason"] for r in read_quarantine(str(out)).to_pylist()}
    assert q["go/4e5f6a7b_nohash_0.wav"].startswith("undecodable audio")
    assert q["up/5f6a7b8c_nohash_0.wav"] == "empty file (0 bytes)"
    assert q["_background_noise_/dude_miaowing.wav"] == "empty file (0 bytes)"
    assert q["yes/notes.txt"].startswith("unexpected file")
    assert q["left/9a9a9a9a_nohash_0.wav"] == "missing file: listed in testing_list.txt but not found"
    assert len(q) == 5 and summary.kept == 19
    assert read_manifest(str(out)).extra["ks_classes"][-2:] == ["_unknown_", "_silence_"]
    ks = read_manifest(str(out)).tasks["ks"]
    assert ks.split_key == "ks" and ks.classes["ks"][-2:] == ["_unknown_", "_silence_"]


def test_speechcommands_is_deterministic_and_silence_can_be_disabled(sc_tree: Path, tmp_path: Path) -> None:
    a = import_dataset("speechcommands", str(sc_tree), str(tmp_path / "a"))
    b = import_dataset("speechcommands", str(sc_tree), str(tmp_path / "b"))
    assert a.kept == b.kept
    assert read_manifest(str(tmp_path / "a")).checksum() == read_manifest(str(tmp_path / "b")).checksum()
    c = import_dataset("speechcommands", str(sc_tree), str(tmp_path / "c"), silence=False)
    assert c.kept == a.kept - 10

"""VoxCeleb1 importer: SID splits from iden_split.txt, ASV trial tables over our utterance ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerlab.data.importers import import_dataset
from layerlab.data.manifest import read_manifest
from layerlab.data.shards import read_metadata, read_quarantine, read_table

# speaker -> youtube id -> utterance numbers; id10270/id10271 are VoxCeleb1 test speakers
LAYOUT = {
    "id10001": {"1zcIwhmdeo4": [1, 2], "7w0IBEWc9Qw": [1]},
    "id10002": {"0_laIeN-Q44": [1, 2]},
    "id10270": {"x6uYqmx31kE": [1], "8jEAjG6SegY": [8]},
    "id10271": {"1gtz-CUIygI": [1, 2]},
}
IDEN = """1 id10001/1zcIwhmdeo4/00001.wav
2 id10001/1zcIwhmdeo4/00002.wav
3 id10001/7w0IBEWc9Qw/00001.wav
1 id10002/0_laIeN-Q44/00001.wav
3 id10002/0_laIeN-Q44/00002.wav
1 id10002/0_laIeN-Q44/00003.wav
3 id10270/x6uYqmx31kE/00001.wav
3 id10270/8jEAjG6SegY/00008.wav
3 id10271/1gtz-CUIygI/00001.wav
3 id10271/1gtz-CUIygI/00002.wav
"""
VERI = """1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav
0 id10270/x6uYqmx31kE/00001.wav id10271/1gtz-CUIygI/00001.wav
1 id10271/1gtz-CUIygI/00001.wav id10271/1gtz-CUIygI/00002.wav
0 id10271/1gtz-CUIygI/00002.wav id10270/8jEAjG6SegY/00008.wav
"""
META = "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\nid10001\tA.J._Buckley\tm\tIreland\tdev\nid10270\tEric_McCormack\tm\tCanada\ttest\nid10271\tSome_One\tf\tUSA\ttest\n"


@pytest.fixture()
def vox_tree(tmp_path: Path, import_audio, import_bad_files) -> Path:
    root = tmp_path / "voxceleb1"
    i = 0
    for spk, videos in LAYOUT.items():
        for yt, utts in videos.items():
            for u in utts:
                import_audio.write(root / "wav" / spk / yt / f"{u:05d}.wav", i, seconds=1.2)
                i += 1
    corrupt, empty = import_bad_files
    corrupt(root / "wav" / "id10271" / "1gtz-CUIygI" / "00002.wav")  # used by two trials
    empty(root / "wav" / "id10001" / "7w0IBEWc9Qw" / "00001.wav")
    (root / "wav" / "id10002" / "0_laIeN-Q44" / "notes.txt").write_text("x")  # unexpected
    import_audio.write(root / "wav" / "id10002" / "stray.wav", 3)  # wrong depth
    (root / "iden_split.txt").write_text(IDEN)  # lists id10002/.../00003.wav, which is absent
    (root / "veri_test2.txt").write_text(VERI)
    (root / "list_test_hard2.txt").write_text(VERI.splitlines()[0] + "\n")
    (root / "vox1_meta.csv").write_text(META)
    return root


def test_voxceleb1_labels_splits_trials_and_quarantine(vox_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = import_dataset("voxceleb1", str(vox_tree), str(out))
    meta = {r["id"]: r for r in read_metadata(str(out)).to_pylist()}
    assert sorted(meta) == [
        "id10001-1zcIwhmdeo4-00001", "id10001-1zcIwhmdeo4-00002", "id10002-0_laIeN-Q44-00001",
        "id10002-0_laIeN-Q44-00002", "id10270-8jEAjG6SegY-00008", "id10270-x6uYqmx31kE-00001",
        "id10271-1gtz-CUIygI-00001",
    ]
    r = meta["id10001-1zcIwhmdeo4-00002"]
    assert r["speaker"] == "id10001" and dict(r["labels"]) == {"sid": "id10001", "sex": "M"}
    assert dict(r["splits"]) == {"sid": "dev", "asv": "train"}
    assert dict(meta["id10002-0_laIeN-Q44-00002"]["splits"]) == {"sid": "test", "asv": "train"}
    assert dict(meta["id10001-1zcIwhmdeo4-00001"]["splits"])["sid"] == "train"
    assert dict(meta["id10270-x6uYqmx31kE-00001"]["splits"]) == {"sid": "test", "asv": "test"}
    assert dict(meta["id10271-1gtz-CUIygI-00001"]["labels"])["sex"] == "F"
    assert "sex" not in dict(meta["id10002-0_laIeN-Q44-00001"]["labels"])  # not in vox1_meta.csv

    trials = read_table(str(out), "asv_trials").to_pylist()
    assert trials == [
        {"enrol": "id10270-x6uYqmx31kE-00001", "test": "id10270-8jEAjG6SegY-00008", "label": 1},
        {"enrol": "id10270-x6uYqmx31kE-00001", "test": "id10271-1gtz-CUIygI-00001", "label": 0},
    ]
    assert read_table(str(out), "asv_trials_list_test_hard2").num_rows == 1
    assert read_manifest(str(out)).extra["asv_trial_list"] == "veri_test2.txt"
    tasks = read_manifest(str(out)).tasks
    assert tasks["asv"].kind == "verification" and tasks["asv"].trials == "asv_trials" and tasks["sid"].split_key == "sid"

    q = {(r["source"]): (r["reason"], r["stage"]) for r in read_quarantine(str(out)).to_pylist()}
    assert q["wav/id10271/1gtz-CUIygI/00002.wav"][0].startswith("undecodable audio")
    assert q["wav/id10001/7w0IBEWc9Qw/00001.wav"][0] == "empty file (0 bytes)"
    assert q["wav/id10002/0_laIeN-Q44/00003.wav"][0] == "missing file: listed in iden_split.txt but not found"
    assert q["wav/id10002/0_laIeN-Q44/notes.txt"][0].startswith("unexpected file")
    assert q["wav/id10002/stray.wav"][0].startswith("unexpected file")
    assert q["veri_test2.txt:3"] == ("trial dropped: id10271-1gtz-CUIygI-00002 not in the dataset", "trials")
    assert q["veri_test2.txt:4"][1] == "trials"
    assert summary.kept == 7 and summary.quarantined == 7


def test_voxceleb1_explicit_trial_list_and_missing_wav_folder(vox_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    import_dataset("voxceleb1", str(vox_tree), str(out), trial_list="list_test_hard2.txt")
    assert read_table(str(out), "asv_trials").num_rows == 1
    assert read_table(str(out), "asv_trials_veri_test2").num_rows == 2
    with pytest.raises(FileNotFoundError, match="veri_test.txt: trial list not found"):
        import_dataset("voxceleb1", str(vox_tree), str(tmp_path / "o2"), trial_list="veri_test.txt")
    with pytest.raises(FileNotFoundError, match="no wav/ folder"):
        import_dataset("voxceleb1", str(vox_tree / "wav"), str(tmp_path / "o3"))


def test_voxceleb1_malformed_split_line_names_file_and_line(vox_tree: Path, tmp_path: Path) -> None:
    (vox_tree / "iden_split.txt").write_text(IDEN + "4 id10001/1zcIwhmdeo4/00001.wav\n")
    with pytest.raises(ValueError, match=r"iden_split\.txt:11"):
        import_dataset("voxceleb1", str(vox_tree), str(tmp_path / "out"))

"""IEMOCAP importer: SUPERB 4-class mapping, sessions as folds, dropped labels quarantined."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerlab.data.importers import import_dataset
from layerlab.data.manifest import read_manifest
from layerlab.data.shards import read_metadata, read_quarantine

# session -> dialog -> [(utterance, label)]
LABELS = {
    1: {"Ses01F_impro01": [("Ses01F_impro01_F000", "neu"), ("Ses01F_impro01_M000", "fru"), ("Ses01F_impro01_F001", "exc")],
        "Ses01M_script01_1": [("Ses01M_script01_1_M000", "ang"), ("Ses01M_script01_1_F000", "xxx")]},
    2: {"Ses02F_impro02": [("Ses02F_impro02_F000", "sad"), ("Ses02F_impro02_M000", "hap"), ("Ses02F_impro02_M001", "neu"), ("Ses02F_impro02_F001", "exc")]},
}


def _emo_file(dialog: str, utts: list[tuple[str, str]]) -> str:
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    for k, (utt, emo) in enumerate(utts):
        lines += [f"[{6.2901 + 3 * k:.4f} - {8.2357 + 3 * k:.4f}]\t{utt}\t{emo}\t[2.5000, 2.5000, 2.5000]",
                  "C-E1:\tNeutral;\t()", "A-E3:\tval 3; act 2; dom  2;\t()", ""]
    return "\n".join(lines)


@pytest.fixture()
def iemocap_tree(tmp_path: Path, import_audio, import_bad_files) -> Path:
    root = tmp_path / "IEMOCAP_full_release"
    i = 0
    for session, dialogs in LABELS.items():
        s = root / f"Session{session}"
        for dialog, utts in dialogs.items():
            emo = s / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
            emo.parent.mkdir(parents=True, exist_ok=True)
            emo.write_text(_emo_file(dialog, utts))
            trans = s / "dialog" / "transcriptions" / f"{dialog}.txt"
            trans.parent.mkdir(parents=True, exist_ok=True)
            trans.write_text("".join(f"{u} [{6.29 + k:08.4f}-{8.23 + k:08.4f}]: Sentence number {k}.\n" for k, (u, _) in enumerate(utts)))
            for utt, _ in utts:
                import_audio.write(s / "sentences" / "wav" / dialog / f"{utt}.wav", i, seconds=1.3)
                i += 1
        (s / "dialog" / "EmoEvaluation" / "Categorical").mkdir()  # real release has these subfolders
    wav1 = root / "Session1" / "sentences" / "wav"
    import_audio.write(wav1 / "Ses01F_impro01" / "Ses01F_impro01_F002.wav", 20)  # no label line
    (wav1 / "Ses01F_impro01" / "Ses01F_impro01_F001.wav").unlink()  # labelled (exc) but missing
    corrupt, empty = import_bad_files
    empty(wav1 / "Ses01M_script01_1" / "Ses01M_script01_1_M000.wav")
    corrupt(root / "Session2" / "sentences" / "wav" / "Ses02F_impro02" / "Ses02F_impro02_M001.wav")
    (wav1 / "Ses01F_impro01" / "Ses01F_impro01.pk").write_bytes(b"x")  # unexpected
    import_audio.write(root / "Session2" / "sentences" / "wav" / "Ses02F_impro03" / "Ses02F_impro03_F000.wav", 21)  # no EmoEvaluation file
    return tmp_path


def test_iemocap_mapping_folds_and_quarantine(iemocap_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = import_dataset("iemocap", str(iemocap_tree), str(out))
    meta = {r["id"]: r for r in read_metadata(str(out)).to_pylist()}
    assert sorted(meta) == ["Ses01F_impro01_F000", "Ses02F_impro02_F000", "Ses02F_impro02_F001", "Ses02F_impro02_M000"]
    assert dict(meta["Ses02F_impro02_F001"]["labels"]) == {"er": "hap", "er_original": "exc"}
    assert dict(meta["Ses01F_impro01_F000"]["labels"]) == {"er": "neu", "er_original": "neu"}
    assert dict(meta["Ses01F_impro01_F000"]["splits"]) == {"er": "session1"}
    assert meta["Ses01F_impro01_F000"]["transcript"] == "Sentence number 0."
    assert dict(meta["Ses02F_impro02_M000"]["labels"])["er"] == "hap"
    assert meta["Ses02F_impro02_M000"]["speaker"] == "Ses02M"
    assert dict(meta["Ses02F_impro02_M000"]["splits"]) == {"er": "session2"}
    assert meta["Ses02F_impro02_F000"]["speaker"] == "Ses02F"
    er = read_manifest(str(out)).tasks["er"]
    assert er.folds == [f"session{k}" for k in range(1, 6)] and er.classes == {"er": ["neu", "hap", "ang", "sad"]} and er.split_key == "er"

    q = {r["source"]: r["reason"] for r in read_quarantine(str(out)).to_pylist()}
    w1, w2 = "Session1/sentences/wav", "Session2/sentences/wav"
    assert q[f"{w1}/Ses01F_impro01/Ses01F_impro01_M000.wav"] == "label outside 4-class mapping: fru"
    assert q[f"{w1}/Ses01M_script01_1/Ses01M_script01_1_F000.wav"] == "label outside 4-class mapping: xxx"
    assert q[f"{w1}/Ses01F_impro01/Ses01F_impro01_F002.wav"] == "no label: Ses01F_impro01_F002 not in Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    assert q[f"{w1}/Ses01F_impro01/Ses01F_impro01_F001.wav"] == "missing file: listed in Session1/dialog/EmoEvaluation/Ses01F_impro01.txt but not found"
    assert q[f"{w1}/Ses01M_script01_1/Ses01M_script01_1_M000.wav"] == "empty file (0 bytes)"
    assert q[f"{w2}/Ses02F_impro02/Ses02F_impro02_M001.wav"].startswith("undecodable audio")
    assert q[f"{w1}/Ses01F_impro01/Ses01F_impro01.pk"].startswith("unexpected file")
    assert q[f"{w2}/Ses02F_impro03/Ses02F_impro03_F000.wav"] == "no label: Session2/dialog/EmoEvaluation/Ses02F_impro03.txt not found"
    assert len(q) == 8 and summary.quarantined == 8 and summary.kept == 4
    assert summary.reasons["label outside 4-class mapping"] == 2


def test_iemocap_requires_sessions(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no Session1..Session5 folders"):
        import_dataset("iemocap", str(tmp_path / "empty"), str(tmp_path / "out"))

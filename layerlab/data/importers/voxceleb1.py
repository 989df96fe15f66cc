"""VoxCeleb1: ``wav/<speaker>/<youtube_id>/<nnnnn>.wav`` with SID splits and ASV trial lists.

``iden_split.txt`` lines ``"<1|2|3> id10001/1zcIwhmdeo4/00001.wav"`` give the SID split
(train/dev/test). Every trial list present (``veri_test2.txt``, ``veri_test.txt``,
``list_test_all2.txt``, ``list_test_hard2.txt``, ``list_test_all.txt``, ``list_test_hard.txt``),
lines ``"<1|0> enrol.wav test.wav"``, becomes a table with columns ``enrol, test, label`` over our
utterance ids; the first present (or ``trial_list``) is published as ``asv_trials``, the others
as ``asv_trials_<list stem>``. ASV split: speakers named in the main trial list are ``test``,
all others ``train`` (SUPERB's ASV protocol: train on the dev speakers, test on the trial list).
``vox1_meta.csv`` (tab-separated, optional) adds a ``sex`` label.
"""

from __future__ import annotations

import posixpath
import re

import pyarrow as pa

from layerlab.data.importers.context import ImportContext

TRIAL_LISTS = ("veri_test2.txt", "veri_test.txt", "list_test_all2.txt", "list_test_hard2.txt", "list_test_all.txt", "list_test_hard.txt")
IDEN_SPLIT = "iden_split.txt"
META = "vox1_meta.csv"
ROOT_FILES = {IDEN_SPLIT, META, *TRIAL_LISTS, "README.txt", "license.txt", "LICENSE.txt"}
SID_SPLITS = {"1": "train", "2": "dev", "3": "test"}
SPEAKER_RE = re.compile(r"^id\d{5}$")
UTT_RE = re.compile(r"^\d{5}\.wav$")
TRIALS_SCHEMA = pa.schema([("enrol", pa.string()), ("test", pa.string()), ("label", pa.int8())])


def utterance_id(rel_wav: str) -> str:
    """``id10001/1zcIwhmdeo4/00001.wav`` -> ``id10001-1zcIwhmdeo4-00001``."""
    return posixpath.splitext(rel_wav)[0].replace("/", "-")


def build(ctx: ImportContext, trial_list: str | None = None) -> None:
    """Stream ``wav/`` into the writer, then publish the trial tables (see module docstring)."""
    tree = ctx.tree
    dirs, files = tree.listdir()
    if "wav" not in dirs:
        raise FileNotFoundError(f"{tree.url}: no wav/ folder; expected the VoxCeleb1 layout wav/<id1xxxx>/<youtube_id>/<nnnnn>.wav")
    ctx.check_root(files, ROOT_FILES, "VoxCeleb1", dirs, {"wav"})
    present = [t for t in TRIAL_LISTS if t in files]
    if trial_list is not None and trial_list not in files:
        raise FileNotFoundError(f"{tree.display(trial_list)}: trial list not found (present: {present or 'none'})")
    main_list = trial_list or (present[0] if present else None)
    iden = _read_iden_split(ctx) if IDEN_SPLIT in files else {}
    sex = _read_meta(ctx) if META in files else {}
    test_speakers = _trial_speakers(ctx, main_list) if main_list else set()

    kept: set[str] = set()
    for rel in tree.walk_files("wav"):
        key = rel[len("wav/"):]
        parts = key.split("/")
        if len(parts) != 3 or not SPEAKER_RE.match(parts[0]) or not UTT_RE.match(parts[2]):
            ctx.unexpected(rel, "not wav/<idNNNNN>/<youtube_id>/<NNNNN>.wav")
            continue
        uid, speaker = utterance_id(key), parts[0]
        splits = {"asv": "test" if speaker in test_speakers else "train"} if main_list else {}
        split = iden.pop(key, None)
        if split is not None:
            splits["sid"] = split
        elif iden or IDEN_SPLIT in files:
            ctx.count(f"utterances not in {IDEN_SPLIT} (no sid split)")
        labels = {"sid": speaker}
        if speaker in sex:
            labels["sex"] = sex[speaker]
        if ctx.add_file(uid, rel, speaker=speaker, labels=labels, splits=splits):
            kept.add(uid)
    for key in sorted(iden):  # listed in iden_split.txt but never found
        ctx.missing(utterance_id(key), f"wav/{key}", IDEN_SPLIT)

    for name in present:
        table = _read_trials(ctx, name, kept)
        ctx.writer.add_table("asv_trials" if name == main_list else f"asv_trials_{posixpath.splitext(name)[0]}", table)
    ctx.publish_extra(
        asv_trial_list=main_list,
        split_convention="sid: iden_split.txt 1/2/3 = train/dev/test; asv: speakers in the main trial list = test, others = train",
    )


def _read_iden_split(ctx: ImportContext) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, line in ctx.tree.iter_lines(IDEN_SPLIT):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or fields[0] not in SID_SPLITS:
            raise ValueError(f"{ctx.tree.display(IDEN_SPLIT)}:{n}: expected '<1|2|3> idNNNNN/<youtube_id>/NNNNN.wav', got {line!r}")
        out[fields[1]] = SID_SPLITS[fields[0]]
    return out


def _read_meta(ctx: ImportContext) -> dict[str, str]:
    """Speaker -> sex (``M``/``F``) from vox1_meta.csv (tab-separated, header first)."""
    out: dict[str, str] = {}
    for n, line in ctx.tree.iter_lines(META):
        fields = [f.strip() for f in line.split("\t")]
        if n == 1 or len(fields) < 3 or not SPEAKER_RE.match(fields[0]):
            continue
        out[fields[0]] = fields[2].upper()
    return out


def _iter_trials(ctx: ImportContext, name: str):
    for n, line in ctx.tree.iter_lines(name):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3 or fields[0] not in ("0", "1"):
            raise ValueError(f"{ctx.tree.display(name)}:{n}: expected '<1|0> enrol.wav test.wav', got {line!r}")
        yield n, int(fields[0]), fields[1], fields[2]


def _trial_speakers(ctx: ImportContext, name: str) -> set[str]:
    speakers: set[str] = set()
    for _, _, enrol, test in _iter_trials(ctx, name):
        speakers.add(enrol.split("/", 1)[0])
        speakers.add(test.split("/", 1)[0])
    return speakers


def _read_trials(ctx: ImportContext, name: str, kept: set[str]) -> pa.Table:
    """The trial list over our ids; trials naming an utterance not in the dataset are quarantined."""
    enrols: list[str] = []
    tests: list[str] = []
    labels: list[int] = []
    for n, label, enrol, test in _iter_trials(ctx, name):
        e, t = utterance_id(enrol), utterance_id(test)
        absent = [u for u in (e, t) if u not in kept]
        if absent:
            ctx.reject(f"{name}:{n}", f"{name}:{n}", f"trial dropped: {', '.join(absent)} not in the dataset", stage="trials")
            continue
        enrols.append(e)
        tests.append(t)
        labels.append(label)
    return pa.Table.from_arrays([pa.array(enrols, pa.string()), pa.array(tests, pa.string()), pa.array(labels, pa.int8())], schema=TRIALS_SCHEMA)

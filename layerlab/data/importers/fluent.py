"""Fluent Speech Commands: ``data/{train,valid,test}_data.csv`` + ``wavs/speakers/<id>/<f>.wav``.

CSV columns ``,path,speakerId,transcription,action,object,location`` (first = pandas index).
Labels: ``ic_action``, ``ic_object``, ``ic_location`` and ``ic`` (the three joined by ``|``, the
31 intents); transcript = ``transcription``. Splits ``ic``: train/dev(valid)/test. The root may be
``fluent_speech_commands_dataset/`` or the folder holding it. Wavs no CSV lists are reported.
"""

from __future__ import annotations

import posixpath

from layerlab.data.importers.context import ImportContext
from layerlab.data.importers.tree import iter_csv_rows

DATASET_DIR = "fluent_speech_commands_dataset"
SPLIT_FILES = {"train_data.csv": "train", "valid_data.csv": "dev", "test_data.csv": "test"}
DATA_FILES = {*SPLIT_FILES, "speaker_demographics.csv"}
REQUIRED = ("path", "speakerId", "transcription", "action", "object", "location")
ROOT_FILES = {"readme.md", "README.md", "Fluent Speech Commands Public License.pdf"}


def build(ctx: ImportContext) -> None:
    """Stream each split CSV's rows into the writer, then report unlisted wavs."""
    if not ctx.tree.exists("data") and ctx.tree.is_dir(DATASET_DIR):
        ctx.tree = ctx.tree.sub(DATASET_DIR)
    tree = ctx.tree
    dirs, files = tree.listdir()
    if "data" not in dirs:
        raise FileNotFoundError(f"{tree.url}: no data/ folder; expected {DATASET_DIR}/data/{{train,valid,test}}_data.csv")
    ctx.check_root(files, ROOT_FILES, "Fluent Speech Commands", dirs, {"data", "wavs"})
    data_dirs, data_files = tree.listdir("data")
    for f in data_files:
        if f not in DATA_FILES:
            ctx.unexpected(f"data/{f}", "not one of the dataset's CSV files")
    for d in data_dirs:
        for f in tree.walk_files(f"data/{d}"):
            ctx.unexpected(f, "not one of the dataset's CSV files")
    listed: set[str] = set()
    for name, split in SPLIT_FILES.items():
        if name not in data_files:
            raise FileNotFoundError(f"{tree.display('data/' + name)}: split file missing")
        for n, row in iter_csv_rows(tree, f"data/{name}", REQUIRED):
            rel = posixpath.normpath(row["path"])
            listed.add(rel)
            speaker = row["speakerId"]
            uid = f"{speaker}_{posixpath.splitext(posixpath.basename(rel))[0]}"
            slots = {"ic_action": row["action"], "ic_object": row["object"], "ic_location": row["location"]}
            if ctx.add_file(
                uid,
                rel,
                speaker=speaker,
                labels={**slots, "ic": "|".join(slots.values())},
                splits={"ic": split},
                transcript=row["transcription"] or None,
                missing_reason=f"missing file: listed in data/{name}:{n} but not found",
            ):
                ctx.count(f"kept {split}")
    if tree.exists("wavs"):
        for rel in tree.walk_files("wavs"):
            if rel not in listed:
                ctx.unexpected(rel, "not listed in any data/*_data.csv")
    ctx.publish_extra(split_convention="ic: train_data.csv = train, valid_data.csv = dev, test_data.csv = test")

"""A CSV manifest: one row per utterance, ``path`` relative to the CSV's folder (or a URL).

Optional columns: ``id`` (default: path without extension, ``/`` -> ``-``), ``speaker``
(empty or absent: the parent folder's name), ``transcript``, ``split``, ``split_<task>``. Every other
column is a label (empty cells are omitted). ``split`` applies to every label task of the row
(and ``asr`` when there is a transcript; ``all`` when there is neither); ``split_<task>`` sets or
overrides one task's split. SRC is the CSV file itself. Named ``csv_manifest`` so that it does not
shadow the standard ``csv`` module; its kind is ``csv``.
"""

from __future__ import annotations

import posixpath

from layerlab.data.importers.context import ImportContext
from layerlab.data.importers.folder import path_id, speaker_of
from layerlab.data.importers.tree import SourceTree, iter_csv_rows

RESERVED = {"path", "id", "speaker", "transcript", "split"}


def build(ctx: ImportContext) -> None:
    """Stream every row's audio file into the writer with its labels and splits."""
    if ctx.tree.is_dir():
        raise ValueError(f"{ctx.tree.url}: the csv importer takes the CSV file itself, not a folder")
    csv_url = ctx.tree.url
    name = posixpath.basename(csv_url)
    folder = csv_url[: -len(name)].rstrip("/") or "."
    ctx.tree = SourceTree(folder)
    for n, row in iter_csv_rows(ctx.tree, name, ("path",)):
        where = f"{name}:{n}"
        path = row.get("path", "")
        if not path:
            ctx.reject("", where, "missing path: empty 'path' cell")
            continue
        if "://" in path or path.startswith("/"):
            tree, rel = SourceTree(posixpath.dirname(path)), posixpath.basename(path)
        else:
            tree, rel = ctx.tree, posixpath.normpath(path)
        uid = row.get("id") or path_id(rel)
        labels = {k: v for k, v in row.items() if k not in RESERVED and not k.startswith("split_") and v}
        transcript = row.get("transcript") or None
        splits: dict[str, str] = {}
        if row.get("split"):
            tasks = list(labels) + (["asr"] if transcript else [])
            splits = {t: row["split"] for t in tasks or ["all"]}
        splits.update({k[len("split_"):]: v for k, v in row.items() if k.startswith("split_") and v})
        speaker = row.get("speaker") or speaker_of(posixpath.normpath(path), "parent")
        if ctx.add_file(
            uid,
            rel,
            speaker=speaker,
            labels=labels,
            splits=splits,
            transcript=transcript,
            missing_reason=f"missing file: listed in {where} but not found",
            tree=tree,
        ):
            ctx.count("kept")

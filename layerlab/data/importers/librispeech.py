"""LibriSpeech: ``<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` plus transcripts.

Accepted roots: the ``LibriSpeech/`` folder (subset folders below it), one subset folder
(``.../test-other``), or a flat excerpt ``<speaker>/<speaker>-<chapter>-<utt>.flac`` (no chapter
folder). Transcripts come from ``<speaker>-<chapter>.trans.txt`` when present. ``SPEAKERS.TXT``
(in the root or its parent) gives each speaker's sex and subset. Labels: ``sid`` = speaker,
``sex``; transcript in the ``transcript`` field (ASR); splits from the subset name for
``split_tasks`` (default ``asr`` and ``pr``: SUPERB uses LibriSpeech subsets for those tasks;
speakers are disjoint across subsets, so a subset split would be meaningless for SID).
"""

from __future__ import annotations

import posixpath
import re

from layerlab.data.importers.context import ImportContext
from layerlab.data.importers.tree import SourceTree

SUBSET_RE = re.compile(r"^(train|dev|test)-(clean|other)(-\d+)?$")
UTTERANCE_RE = re.compile(r"^(\d+)-(\d+)-(\d+)$")
TRANS_RE = re.compile(r"^(\d+)-(\d+)\.trans\.txt$")
#: Files the LibriSpeech release ships at its root (not audio, not unexpected).
ROOT_FILES = {"SPEAKERS.TXT", "CHAPTERS.TXT", "BOOKS.TXT", "LICENSE.TXT", "README.TXT"}


def split_of_subset(subset: str) -> str:
    """``train-clean-100`` -> ``train``, ``dev-other`` -> ``dev``, ``test-clean`` -> ``test``."""
    m = SUBSET_RE.match(subset)
    if not m:
        raise ValueError(f"not a LibriSpeech subset name: {subset!r} (expected e.g. train-clean-100, dev-clean, test-other)")
    return m.group(1)


def read_speakers(tree: SourceTree, rel: str) -> dict[str, dict[str, str]]:
    """Parse SPEAKERS.TXT (``;`` comments, ``ID | SEX | SUBSET | MINUTES | NAME``)."""
    speakers: dict[str, dict[str, str]] = {}
    for n, line in tree.iter_lines(rel):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) < 5 or not fields[0].isdigit():
            raise ValueError(f"{tree.display(rel)}:{n}: expected 'ID | SEX | SUBSET | MINUTES | NAME', got {line!r}")
        speakers[fields[0]] = {"sex": fields[1], "subset": fields[2], "minutes": fields[3], "name": "|".join(fields[4:])}
    return speakers


def _find_speakers_file(tree: SourceTree) -> tuple[SourceTree, str] | None:
    if tree.exists("SPEAKERS.TXT"):
        return tree, "SPEAKERS.TXT"
    parent = posixpath.dirname(tree.url.rstrip("/"))
    if parent and parent != tree.url:
        up = SourceTree(parent)
        if up.exists("SPEAKERS.TXT"):
            return up, "SPEAKERS.TXT"
    return None


def build(ctx: ImportContext, subset: str | None = None, split_tasks: tuple[str, ...] = ("asr", "pr")) -> None:
    """Stream every utterance of the tree into the writer (see the module docstring)."""
    tree = ctx.tree
    found = _find_speakers_file(tree)
    speakers = read_speakers(*found) if found else {}
    if subset is not None:
        split_of_subset(subset)  # validate early
    dirs, files = tree.listdir()
    ctx.check_root(files, ROOT_FILES, "LibriSpeech")
    seen: set[str] = set()
    subset_dirs = [d for d in dirs if SUBSET_RE.match(d)]
    if subset_dirs:  # the LibriSpeech/ root
        for d in dirs:
            if d not in subset_dirs:
                _report_all(ctx, d, f"directory {d!r} is not a LibriSpeech subset")
        for d in subset_dirs:
            sub_dirs, sub_files = tree.listdir(d)
            for f in sub_files:
                ctx.unexpected(posixpath.join(d, f), "file at subset level (expected <speaker>/ folders)")
            seen |= _import_speakers(ctx, d, sub_dirs, subset or d, speakers, split_tasks)
    else:  # one subset folder, or a flat excerpt named anything
        root_subset = subset or (tree.name if SUBSET_RE.match(tree.name) else None)
        seen |= _import_speakers(ctx, "", dirs, root_subset, speakers, split_tasks)
    ctx.publish_extra(
        speakers={k: {"sex": speakers[k]["sex"], "subset": speakers[k]["subset"]} for k in sorted(seen) if k in speakers},
        split_tasks=list(split_tasks),
        split_convention="splits from the LibriSpeech subset name (train-*/dev-*/test-*) for tasks " + ", ".join(split_tasks),
    )


def _report_all(ctx: ImportContext, rel: str, why: str) -> None:
    for f in ctx.tree.walk_files(rel):
        ctx.unexpected(f, why)


def _import_speakers(
    ctx: ImportContext,
    base: str,
    dirs: list[str],
    subset: str | None,
    speakers: dict[str, dict[str, str]],
    split_tasks: tuple[str, ...],
) -> set[str]:
    """Import ``<base>/<speaker>/[<chapter>/]<utt>.flac`` for the speaker folders ``dirs``."""
    tree = ctx.tree
    seen: set[str] = set()
    for spk in dirs:
        spk_rel = posixpath.join(base, spk) if base else spk
        if not spk.isdigit():
            _report_all(ctx, spk_rel, f"directory {spk!r} is not a LibriSpeech speaker id")
            continue
        seen.add(spk)
        for d, subdirs, names in tree.walk(spk_rel):
            depth = d.count("/") - spk_rel.count("/")
            if depth > 1:  # deeper than <speaker>/<chapter>/
                for name in names:
                    ctx.unexpected(posixpath.join(d, name), "nested too deep (expected <speaker>/<chapter>/<utt>.flac)")
                continue
            _import_folder(ctx, d, spk, None if depth == 0 else posixpath.basename(d), names, subset, speakers, split_tasks)
    return seen


def _import_folder(
    ctx: ImportContext,
    rel: str,
    speaker: str,
    chapter: str | None,
    names: list[str],
    subset: str | None,
    speakers: dict[str, dict[str, str]],
    split_tasks: tuple[str, ...],
) -> None:
    """One speaker folder (flat layout) or chapter folder: transcripts first, then the audio."""
    transcripts: dict[str, str] = {}
    trans_files = [n for n in names if TRANS_RE.match(n)]
    for t in trans_files:
        for n, line in ctx.tree.iter_lines(posixpath.join(rel, t)):
            if not line.strip():
                continue
            utt, _, text = line.partition(" ")
            if not UTTERANCE_RE.match(utt):
                raise ValueError(f"{ctx.tree.display(posixpath.join(rel, t))}:{n}: expected 'SPEAKER-CHAPTER-UTT TRANSCRIPT', got {line!r}")
            transcripts[utt] = text.strip()
    info = speakers.get(speaker, {})
    spk_subset = subset or info.get("subset")
    split = split_of_subset(spk_subset) if spk_subset else None
    if split is None:
        ctx.count("utterances without subset (no splits)")
    seen: set[str] = set()
    for name in names:
        path = posixpath.join(rel, name)
        if name in trans_files:
            continue
        stem, ext = posixpath.splitext(name)
        m = UTTERANCE_RE.match(stem)
        if ext != ".flac" or not m:
            ctx.unexpected(path, "not a <speaker>-<chapter>-<utt>.flac file")
            continue
        if m.group(1) != speaker or (chapter is not None and m.group(2) != chapter):
            ctx.unexpected(path, f"name does not match its folder (speaker {speaker}{', chapter ' + chapter if chapter else ''})")
            continue
        seen.add(stem)
        labels = {"sid": speaker}
        if info.get("sex"):
            labels["sex"] = info["sex"]
        transcript = transcripts.get(stem)
        if transcript is None:
            ctx.count("utterances without transcript")
        if ctx.add_file(
            stem,
            path,
            speaker=speaker,
            labels=labels,
            splits={task: split for task in split_tasks} if split else {},
            transcript=transcript,
        ):
            ctx.count(f"kept in {spk_subset or 'unknown subset'}")
    for utt in sorted(set(transcripts) - seen):
        parts = utt.split("-")
        ctx.missing(utt, posixpath.join(rel, f"{utt}.flac"), f"{parts[0]}-{parts[1]}.trans.txt")

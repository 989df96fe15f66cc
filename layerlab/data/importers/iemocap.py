"""IEMOCAP: ``Session{1..5}/sentences/wav/<dialog>/<utt>.wav`` with SUPERB's 4-class ER labels.

Labels come from ``Session{n}/dialog/EmoEvaluation/<dialog>.txt`` lines
``[start - end]<TAB><utt><TAB><emo><TAB>[v, a, d]``. Mapping: neu, ang, sad as is, hap and exc
-> hap; any other label (fru, sur, fea, dis, oth, xxx) is quarantined as ``label outside 4-class
mapping``. Folds are sessions: ``splits={"er": "session<n>"}``; fold k of the leave-one-session-out
protocol tests on ``session<k>`` and trains on the rest. Speaker = session + the utterance's
speaker gender (``Ses01F``, ``Ses01M``). Transcripts from ``dialog/transcriptions/<dialog>.txt``
when present. Only the ``sentences/wav`` trees are walked (the release's video, motion capture
and documentation folders are not audio and are not listed).
"""

from __future__ import annotations

import posixpath
import re

from layerlab.data.importers.context import ImportContext

DATASET_DIR = "IEMOCAP_full_release"
EMOTION_MAP = {"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"}
SESSION_RE = re.compile(r"^Session([1-5])$")
LABEL_RE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\t(\S+)\t(\S+)\t")
TRANSCRIPT_RE = re.compile(r"^(\S+) \[[\d.]+-[\d.]+\]: ?(.*)$")
UTT_RE = re.compile(r"^Ses0([1-5])[FM]_\S+_([FM])\d{3}$")


def build(ctx: ImportContext) -> None:
    """Stream every session's sentence wavs with their ER labels into the writer."""
    if not any(SESSION_RE.match(d) for d in ctx.tree.listdir()[0]) and ctx.tree.is_dir(DATASET_DIR):
        ctx.tree = ctx.tree.sub(DATASET_DIR)
    sessions = [d for d in ctx.tree.listdir()[0] if SESSION_RE.match(d)]
    if not sessions:
        raise FileNotFoundError(f"{ctx.tree.url}: no Session1..Session5 folders; expected {DATASET_DIR}/Session<n>/sentences/wav/")
    for session in sessions:
        _import_session(ctx, session, int(SESSION_RE.match(session).group(1)))  # type: ignore[union-attr]
    ctx.publish_extra(
        er_classes=["neu", "hap", "ang", "sad"],
        er_label_map=EMOTION_MAP,
        split_convention="er: splits['er'] = 'session<n>'; fold k tests on session<k>, trains on the other four",
    )


def _import_session(ctx: ImportContext, session: str, number: int) -> None:
    tree = ctx.tree
    wav_root = f"{session}/sentences/wav"
    if not tree.is_dir(wav_root):
        raise FileNotFoundError(f"{tree.display(wav_root)}: missing (expected {session}/sentences/wav/<dialog>/<utt>.wav)")
    dialogs, stray = tree.listdir(wav_root)
    for f in stray:
        ctx.unexpected(f"{wav_root}/{f}", "file outside a dialog folder")
    for dialog in dialogs:
        label_file = f"{session}/dialog/EmoEvaluation/{dialog}.txt"
        labels = _read_labels(ctx, label_file) if tree.exists(label_file) else None
        transcripts = _read_transcripts(ctx, f"{session}/dialog/transcriptions/{dialog}.txt")
        seen: set[str] = set()
        for rel in tree.walk_files(f"{wav_root}/{dialog}"):
            name = posixpath.basename(rel)
            utt, ext = posixpath.splitext(name)
            m = UTT_RE.match(utt)
            if rel.count("/") != 4 or ext != ".wav" or not m or not utt.startswith(dialog):
                ctx.unexpected(rel, f"not an utterance wav of dialog {dialog}")
                continue
            seen.add(utt)
            if labels is None:
                ctx.reject(utt, rel, f"no label: {label_file} not found")
                continue
            raw = labels.get(utt)
            if raw is None:
                ctx.reject(utt, rel, f"no label: {utt} not in {label_file}")
                continue
            label = EMOTION_MAP.get(raw)
            if label is None:
                ctx.reject(utt, rel, f"label outside 4-class mapping: {raw}")
                ctx.count(f"outside 4-class mapping: {raw}")
                continue
            if ctx.add_file(
                utt,
                rel,
                speaker=f"Ses0{m.group(1)}{m.group(2)}",
                labels={"er": label, "er_original": raw},
                splits={"er": f"session{number}"},
                transcript=transcripts.get(utt),
            ):
                ctx.count(f"kept er={label}")
        for utt in sorted(set(labels or {}) - seen):
            ctx.missing(utt, f"{wav_root}/{dialog}/{utt}.wav", label_file)


def _read_labels(ctx: ImportContext, rel: str) -> dict[str, str]:
    """Utterance -> categorical label from an EmoEvaluation file (only the ``[start - end]`` lines)."""
    out: dict[str, str] = {}
    for _, line in ctx.tree.iter_lines(rel):
        m = LABEL_RE.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def _read_transcripts(ctx: ImportContext, rel: str) -> dict[str, str]:
    """Utterance -> transcript from ``dialog/transcriptions/<dialog>.txt`` (empty when absent)."""
    if not ctx.tree.exists(rel):
        return {}
    out: dict[str, str] = {}
    for _, line in ctx.tree.iter_lines(rel):
        m = TRANSCRIPT_RE.match(line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out

"""Label references: what a layer is compared with, where its labels come from, and why one is skipped.

A reference is a one-hot label treated as one more "layer" of the moment state. Three item levels:

* ``frame``: every frame of a frame-level layer, labelled with the phone whose alignment span holds
  the frame's centre (each layer by its own hop and frame convention, ``LayerMeta.spans_to_frames``);
* ``span``: the mean of a span's frames (Pasad et al.'s span pooling), labelled with the span's phone
  (``phone_span``) or word (``word_span``: needs word alignments, which no layerlab dataset records yet);
* ``utterance``: each utterance's mean (pooled tier), labelled with its speaker, keyword, intent or style.

The held-out classifier trains on the dataset's ``train`` split of the reference's task, picks its
ridge on ``dev`` and scores ``test`` (speaker: the SID split, held-out utterances of the same
speakers; the others: the task's split). A reference the dataset has no labels for is skipped with
its reason, never silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from layerlab.data.alignment import spans_of

LEVELS = ("frame", "span", "utterance")
#: the label keys of the intent reference (Fluent Speech Commands' slots; an intent is all three together)
INTENT_KEYS = ("ic_action", "ic_object", "ic_location")


@dataclass(frozen=True)
class ReferenceDef:
    """One reference: its item level, the dataset task whose labels and split it uses, and the SGD probe task it mirrors."""

    name: str
    level: str
    task: str
    sgd_task: str
    description: str


REFERENCES: dict[str, ReferenceDef] = {r.name: r for r in (
    ReferenceDef("phone", "frame", "pr", "pr", "frame-level phone one-hot from the alignment (frame centre in the span)"),
    ReferenceDef("phone_span", "span", "pr", "pr", "phone spans: the mean of each aligned phone's frames"),
    ReferenceDef("word_span", "span", "asr", "asr", "word spans: the mean of each aligned word's frames (needs word alignments)"),
    ReferenceDef("speaker", "utterance", "sid", "sid", "utterance speaker one-hot"),
    ReferenceDef("keyword", "utterance", "ks", "ks", "keyword-spotting label one-hot"),
    ReferenceDef("intent", "utterance", "ic", "ic", "intent one-hot (action, object and location together)"),
    ReferenceDef("style", "utterance", "style", "style", "speaking-style one-hot"),
)}
#: what `--reference all` means: every reference (the ones a dataset cannot serve are skipped with their reason)
ALL = tuple(REFERENCES)


def parse_references(names: str | Sequence[str] | None, what: str = "--reference") -> list[str]:
    """Reference names from ``phone,speaker`` / a list / ``all`` / None (all); unknown names are a ValueError listing the known ones.

    ``what`` names the option or key in the message (empty: none, for a config field that names itself).
    """
    where = f"{what}: " if what else ""
    if names is None:
        return list(ALL)
    items = [s.strip() for s in (names.split(",") if isinstance(names, str) else names) if str(s).strip()]
    if not items:
        raise ValueError(f"{where}empty list")
    if items == ["all"]:
        return list(ALL)
    unknown = [n for n in items if n not in REFERENCES]
    if unknown:
        raise ValueError(f"{where}unknown reference(s) {', '.join(unknown)}; known: {', '.join(ALL)}, all")
    return list(dict.fromkeys(items))


@dataclass
class BoundReference:
    """A reference bound to a dataset's rows: its classes and, per utterance, its labels (or spans), split and speaker.

    ``labels[uid]``: the class index (utterance level) or ``(class indices, starts, ends)`` of the spans in samples
    (frame and span levels); only utterances that carry the reference are listed.
    """

    name: str
    level: str
    classes: list[str]
    labels: dict[str, Any]
    splits: dict[str, str]
    split_rule: str
    notes: list[str] = field(default_factory=list)

    @property
    def definition(self) -> ReferenceDef:
        return REFERENCES[self.name]


def _label(labels: dict[str, Any], key: str) -> str | None:
    value = labels.get(key)
    if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
        return None
    return str(value)


def _spans(alignment: Any) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    if alignment is None or len(alignment) == 0:
        return None
    return spans_of(alignment)


def _utterance_value(name: str, row: Any) -> str | None:
    labels = dict(row["labels"]) if row.get("labels") is not None else {}
    if name == "speaker":
        return str(row["speaker"]) if row.get("speaker") else None
    if name == "keyword":
        return _label(labels, "ks")
    if name == "style":
        return _label(labels, "style")
    if name == "intent":
        parts = [_label(labels, k) for k in INTENT_KEYS]
        return None if any(p is None for p in parts) else "|".join(parts)  # type: ignore[arg-type]
    raise ValueError(f"reference {name!r} is not utterance-level")


def bind_reference(name: str, rows: Any, tasks: dict[str, Any], *, has_frames: bool) -> tuple[BoundReference | None, str | None]:
    """(bound reference, None), or (None, the reason it is skipped) for the dataset ``rows`` (``CacheReader.source_rows``).

    ``tasks``: the dataset's task contract (``CacheReader.tasks``), which names each task's split key;
    ``has_frames``: whether the cache holds a frames tier (frame and span levels read it).
    """
    ref = REFERENCES[name]
    if ref.level != "utterance" and not has_frames:
        return None, f"{name}: the cache has no frames tier ({ref.level}-level items are frames); re-extract with --tier both"
    if name == "word_span":
        return None, ("word_span: the dataset records no word alignments (its alignments are phone spans only), so there are no "
                      "word spans to pool; word references need a dataset with word-level alignments")
    spec = tasks.get(ref.task)
    split_key = getattr(spec, "split_key", None) if spec is not None else None
    labels: dict[str, Any] = {}
    classes: set[str] = set()
    if ref.level == "utterance":
        for uid, row in rows.iterrows():
            value = _utterance_value(name, row)
            if value is not None:
                labels[str(uid)] = value
                classes.add(value)
        if not labels:
            what = {"speaker": "speaker ids", "keyword": "keyword (ks) labels", "intent": f"intent labels ({', '.join(INTENT_KEYS)})",
                    "style": "style labels"}[name]
            return None, f"{name}: no utterance carries {what}"
        order = sorted(classes)
        index = {c: i for i, c in enumerate(order)}
        labels = {u: index[v] for u, v in labels.items()}
    else:
        if "alignment" not in rows.columns:
            return None, f"{name}: the dataset has no alignment column (no phone alignments)"
        spans: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
        for uid, align in rows["alignment"].items():
            s = _spans(align)
            if s is not None:
                spans[str(uid)] = s
                classes.update(s[0])
        if not spans:
            return None, f"{name}: no utterance carries a phone alignment"
        order = sorted(classes)
        index = {c: i for i, c in enumerate(order)}
        labels = {u: (np.array([index[p] for p in ph], dtype=np.int64), st, en) for u, (ph, st, en) in spans.items()}
    if len(order) < 2:
        return None, f"{name}: a single class ({order[0]!r}) in the dataset: nothing to discriminate"
    splits: dict[str, str] = {}
    if split_key:
        for uid, sp in rows["splits"].items():
            value = dict(sp or {}).get(split_key) if sp is not None else None
            if value and str(uid) in labels:
                splits[str(uid)] = str(value)
    rule = (f"the dataset's {split_key!r} split (task {ref.task})" if splits else
            f"none: the dataset has no split for task {ref.task!r} (no held-out classifier)")
    return BoundReference(name, ref.level, order, labels, splits, rule), None

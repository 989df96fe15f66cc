"""Seeded, speaker-balanced samples of a dataset's utterances, and the frames selection an extraction writes.

One implementation for everyone who samples: a probe's ``max_train_utterances`` / ``max_dev_utterances``,
the CKA sample (``cka: {split, max_utterances}`` of a study) and its half for the convergence check, and
the study plan that decides, before extraction, which utterances (or fixed crops of them) get a frames tier.

A :class:`FramesSelection` maps utterance id -> ``None`` (all its frames) or a crop ``(start_s, seconds)``;
its :meth:`~FramesSelection.digest` enters the cache's identity, so a cache extended with another
selection is refused instead of mixed.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


class SampleError(ValueError):
    """A sample that cannot be drawn (more utterances than the split has, fewer than 2 speakers, ...)."""


def speaker_balanced_sample(ids: Sequence[str], speakers: Sequence[str], k: int, seed: int) -> list[str]:
    """``k`` of ``ids``, drawn round-robin over speakers in a seeded order (each speaker keeps about k / speakers), in input order.

    Nested: with the same ids and seed, the sample of ``k`` contains the sample of any ``k' < k``.
    """
    rng = np.random.default_rng([seed, 0x5B3])
    by: dict[str, list[str]] = {}
    for uid, spk in zip(ids, speakers):
        by.setdefault(spk, []).append(uid)
    queues = {spk: [members[i] for i in rng.permutation(len(members))] for spk, members in sorted(by.items())}
    chosen: set[str] = set()
    k = min(k, len(ids))
    while len(chosen) < k:
        for spk in sorted(queues):
            if queues[spk] and len(chosen) < k:
                chosen.add(queues[spk].pop())
    return [u for u in ids if u in chosen]


def splits_dict(splits: object) -> dict[str, str]:
    """A row's ``splits`` map as a dict (Parquet map columns arrive as lists of pairs)."""
    if splits is None:
        return {}
    return {str(k): str(v) for k, v in (splits.items() if isinstance(splits, Mapping) else splits)}  # type: ignore[attr-defined]


def split_members(rows: Iterable[Mapping[str, object]], split: str | None, split_task: str | None) -> tuple[list[str], list[str], str]:
    """(ids, speakers, how) of the rows in ``split`` of ``split_task`` (the first task whose split key the rows carry when None).

    ``split`` None: every row. ``how`` says which split key was used (recorded with the sample).
    """
    rows = list(rows)
    if split is None:
        return [str(r["id"]) for r in rows], [str(r.get("speaker") or "") for r in rows], "all utterances"
    task = split_task
    if task is None:
        seen: list[str] = []
        for r in rows:
            for key in splits_dict(r.get("splits")):
                if key not in seen:
                    seen.append(key)
        task = next((t for t in sorted(seen) if any(splits_dict(r.get("splits")).get(t) == split for r in rows)), None)
        if task is None:
            raise SampleError(f"no utterance is in split {split!r} of any task (split keys: {', '.join(sorted(seen)) or 'none'})")
    ids, speakers = [], []
    for r in rows:
        if splits_dict(r.get("splits")).get(task) == split:
            ids.append(str(r["id"]))
            speakers.append(str(r.get("speaker") or ""))
    return ids, speakers, f"split {split!r} of task {task!r}"


def cka_sample(ids: Sequence[str], speakers: Sequence[str], max_utterances: int | None, seed: int, where: str = "cka") -> list[str]:
    """The CKA sample: ``max_utterances`` of ``ids`` (all when None), seeded and speaker-balanced; errors name ``where``."""
    if max_utterances is not None and max_utterances > len(ids):
        raise SampleError(f"{where}: max_utterances {max_utterances} exceeds the {len(ids)} utterances of the split")
    chosen = list(ids) if max_utterances is None else speaker_balanced_sample(ids, speakers, max_utterances, seed)
    spk = dict(zip(ids, speakers))
    n_speakers = len({spk[u] for u in chosen})
    if n_speakers < 2:
        raise SampleError(f"{where}: the CKA sample holds {n_speakers} speaker(s) ({len(chosen)} utterances); "
                          "speaker-grouped estimates and the convergence check need at least 2")
    return chosen


def half_sample(ids: Sequence[str], speakers: Sequence[str], seed: int) -> list[str]:
    """A seeded, speaker-balanced half of ``ids`` (the convergence check: the estimate on half the sample vs all of it)."""
    return speaker_balanced_sample(ids, speakers, max(1, len(ids) // 2), seed + 1)


def speaker_folds(speakers: Iterable[str], groups: int, seed: int) -> dict[str, str]:
    """Deal the distinct speakers (seeded order) round-robin into ``groups`` folds of whole speakers: speaker -> ``foldNN``."""
    distinct = sorted(set(speakers))
    order = [distinct[i] for i in np.random.default_rng([seed, 0xF01D]).permutation(len(distinct))]
    return {spk: f"fold{k % groups:02d}" for k, spk in enumerate(order)}


def fixed_crop(uid: str, seconds: float, crop_seconds: float, seed: int) -> tuple[float, float] | None:
    """A seeded crop ``(start_s, crop_seconds)`` of an utterance ``seconds`` long (None: shorter than the crop, keep it all).

    The start depends only on (seed, id, lengths), so every extraction of the same selection crops alike.
    """
    if seconds <= crop_seconds:
        return None
    u = (zlib.crc32(f"{seed}:{uid}".encode()) & 0xFFFFFFFF) / 2**32
    start = round(u * (seconds - crop_seconds), 4)
    return (start, float(crop_seconds))


@dataclass
class FramesSelection:
    """Which utterances an extraction writes frames for: id -> None (every frame) or a crop ``(start_s, seconds)``.

    ``purposes`` records why (e.g. ``pr train sample: 2000 utterances``) for the cache metadata and the plan.
    """

    ids: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    purposes: list[str] = field(default_factory=list)

    def add(self, ids: Iterable[str], crop: Mapping[str, tuple[float, float] | None] | None = None, purpose: str = "") -> None:
        """Add utterances (whole, or cropped per ``crop``); an utterance asked whole anywhere stays whole."""
        for uid in ids:
            want = None if crop is None else crop.get(uid)
            if uid in self.ids:
                have = self.ids[uid]
                if have is None or want is None:
                    self.ids[uid] = None
                elif have != want:  # two crops of one utterance: keep the span covering both
                    start = min(have[0], want[0])
                    self.ids[uid] = (start, max(have[0] + have[1], want[0] + want[1]) - start)
            else:
                self.ids[uid] = want
        if purpose:
            self.purposes.append(purpose)

    def to_json(self) -> dict[str, object]:
        """JSON form (sorted ids): ``{"ids": {id: null | [start_s, seconds]}, "purposes": [...]}``."""
        return {"ids": {u: (None if c is None else [c[0], c[1]]) for u, c in sorted(self.ids.items())}, "purposes": list(self.purposes)}

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> "FramesSelection":
        """Inverse of :meth:`to_json`."""
        raw = doc.get("ids") or {}
        assert isinstance(raw, Mapping)
        ids = {str(u): (None if c is None else (float(c[0]), float(c[1]))) for u, c in raw.items()}  # type: ignore[index]
        return cls(ids, [str(p) for p in doc.get("purposes") or []])  # type: ignore[union-attr]

    def digest(self) -> str:
        """SHA-256 of the sorted ids and crops (the cache identity of a partial frames tier)."""
        text = json.dumps(self.to_json()["ids"], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def cropped(self) -> int:
        """Utterances stored as a crop."""
        return sum(1 for c in self.ids.values() if c is not None)

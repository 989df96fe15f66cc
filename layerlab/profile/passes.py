"""The two passes over a cache's shards, one shard at a time (what a Ray task runs): moments, then held-out scores.

Pass 1 (:func:`shard_moments`) turns one shard into one :class:`LabelMoments` per reference and group
(speaker x split) and counts each frame's k-means unit; pass 2 (:func:`shard_scores`) runs the fitted
classifiers over the shard's dev and test items into :class:`ScoreCounts`. Both return plain state
dicts, so a driver merges them in any order.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from layerlab.profile.references import BoundReference
from layerlab.profile.state import LabelMoments, ScoreCounts

Key = tuple[str, str]  # (speaker, split)


class _Buffers:
    """Items waiting to be added, per (reference, group, layer), flushed in batches of ``rows`` (fewer, larger GEMMs)."""

    def __init__(self, rows: int, flush: Any) -> None:
        self.rows, self.flush_fn = rows, flush
        self.items: dict[tuple[str, Key, int], list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]] = {}
        self.sizes: dict[tuple[str, Key, int], int] = {}

    def add(self, ref: str, key: Key, layer: int, x: np.ndarray, y: np.ndarray, units: np.ndarray | None = None) -> None:
        if not len(y):
            return
        slot = (ref, key, layer)
        self.items.setdefault(slot, []).append((x, y, units))
        self.sizes[slot] = self.sizes.get(slot, 0) + len(y)
        if self.sizes[slot] >= self.rows:
            self._flush(slot)

    def _flush(self, slot: tuple[str, Key, int]) -> None:
        parts = self.items.pop(slot, [])
        self.sizes.pop(slot, None)
        if parts:
            units = None if parts[0][2] is None else np.concatenate([p[2] for p in parts])  # type: ignore[misc]
            self.flush_fn(slot, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), units)

    def close(self) -> None:
        for slot in list(self.items):
            self._flush(slot)


def _frame_items(prep: Any, shard: str) -> Iterator[tuple[str, str, list[np.ndarray], list[np.ndarray]]]:
    """(id, speaker, frames per frame-level layer, phone span index per frame and layer) of one shard's labelled utterances."""
    from layerlab.cka.cache_input import read_utterances

    metas = [prep.frame_info.cache.layer(n) for n in prep.frame_info.layer_names]
    for utt in read_utterances(shard, prep.frame_info, "frame"):
        spans = prep.alignments.get(utt.id)
        if spans is None:
            yield utt.id, prep.speaker_of(utt), [], []
            continue
        _, starts, ends = spans
        index, seen = [], {}  # layers of one geometry (hop, convention, window, frame count) share one span map
        for m, x in zip(metas, utt.layers):
            geometry = (m.hop_samples, m.frame_convention, m.window_samples, len(x))
            if geometry not in seen:
                seen[geometry] = m.spans_to_frames(starts, ends, len(x))
            index.append(seen[geometry])
        yield utt.id, prep.speaker_of(utt), utt.layers, index


def _span_means(x: np.ndarray, span: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(span ids, mean frame of each span) over the frames a span holds (frames outside every span left out)."""
    ok = span >= 0
    idx, xs = span[ok], x[ok]
    if not len(idx):
        return idx, np.zeros((0, x.shape[1]))
    order = np.argsort(idx, kind="stable")
    idx, xs = idx[order], xs[order]
    uniq, start = np.unique(idx, return_index=True)
    sums = np.add.reduceat(xs.astype(np.float64), start, axis=0)
    counts = np.diff(np.append(start, len(idx)))
    return uniq, sums / counts[:, None]


def frame_level_items(prep: Any, ref: BoundReference, uid: str, layers: list[np.ndarray], index: list[np.ndarray]
                      ) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """(layer, items, class labels, the frames' positions in the layer or -1 for span means) for a frame or span reference."""
    classes = ref.labels[uid][0]
    for layer, (x, span) in enumerate(zip(layers, index)):
        if ref.level == "frame":
            ok = np.flatnonzero(span >= 0)
            yield layer, x[ok], classes[span[ok]], ok
        else:
            ids, means = _span_means(x, span)
            yield layer, means, classes[ids], np.full(len(ids), -1)


def _one_thread() -> Any:
    """torch on one thread for the block (layerlab.cka.linalg.single_threaded: shared cores make thread pools collapse)."""
    import torch

    from layerlab.cka.linalg import single_threaded

    return single_threaded(torch.device("cpu"))


def shard_moments(prep: Any, pilot: Any, shard: str, held: "HeldOut | None" = None) -> tuple[dict[str, dict[Key, dict[str, Any]]], list[str], dict[str, int]]:
    """Pass 1 over one shard: {reference: {(speaker, split): LabelMoments state}}, the ids read, and counts of what was left out.

    ``held`` (in-process runs): receives the shard's dev and test items, so that pass 2 can score them from memory.
    """
    with _one_thread():
        return _shard_moments(prep, pilot, shard, held)


def _shard_moments(prep: Any, pilot: Any, shard: str, held: "HeldOut | None" = None) -> tuple[dict[str, dict[Key, dict[str, Any]]], list[str], dict[str, int]]:
    from layerlab.kmeans import assign

    states: dict[str, dict[Key, LabelMoments]] = {r.name: {} for r in prep.refs}
    refs = {r.name: r for r in prep.refs}
    ids: list[str] = []
    counts = {"utterances": 0, "unlabelled_frames": 0}

    def new_state(ref: BoundReference) -> LabelMoments:
        if ref.level == "utterance":
            return LabelMoments(prep.info.dims, len(ref.classes), pilot.utterance_shift)
        units = pilot.clusters if (ref.level == "frame" and pilot.codebooks) else 0
        return LabelMoments(prep.frame_info.dims, len(ref.classes), pilot.frame_shift, units)

    def flush(slot: tuple[str, Key, int], x: np.ndarray, y: np.ndarray, units: np.ndarray | None) -> None:
        name, key, layer = slot
        target = states[name].get(key)
        if target is None:
            target = states[name][key] = new_state(refs[name])
        target.update(layer, x, y, units)

    buf = _Buffers(prep.job.batch_rows, flush)
    frame_refs = [r for r in prep.refs if r.level != "utterance"]
    if frame_refs:
        for uid, speaker, layers, index in _frame_items(prep, shard):
            ids.append(uid)
            counts["utterances"] += 1
            units_of: dict[int, np.ndarray] = {}
            for ref in frame_refs:
                if uid not in ref.labels:
                    continue
                key = (speaker, ref.splits.get(uid, ""))
                for layer, x, y, pos in frame_level_items(prep, ref, uid, layers, index):
                    units = None
                    if ref.level == "frame":
                        counts["unlabelled_frames"] += len(layers[layer]) - len(pos)
                        if pilot.codebooks:
                            if layer not in units_of:
                                units_of[layer] = assign(np.asarray(layers[layer], np.float32), pilot.codebooks[layer]).numpy()
                            units = units_of[layer][pos]
                    buf.add(ref.name, key, layer, x, y, units)
                    if held is not None and key[1] in ("dev", "test"):
                        held.add(ref.name, key, layer, x, y)
    utt_refs = [r for r in prep.refs if r.level == "utterance"]
    if utt_refs:
        from layerlab.cka.cache_input import read_utterances

        seen = set(ids)
        for utt in read_utterances(shard, prep.info, "utterance"):
            if not frame_refs:
                ids.append(utt.id)
                counts["utterances"] += 1
            elif utt.id not in seen:
                raise ValueError(f"{prep.info.url}: shard {shard}: utterance {utt.id!r} is in the pooled tier but not in the frames tier")
            speaker = prep.speaker_of(utt)
            for ref in utt_refs:
                y = ref.labels.get(utt.id)
                if y is None:
                    continue
                key = (speaker, ref.splits.get(utt.id, ""))
                for layer, x in enumerate(utt.layers):
                    buf.add(ref.name, key, layer, x.reshape(1, -1), np.array([y], dtype=np.int64))
                    if held is not None and key[1] in ("dev", "test"):
                        held.add(ref.name, key, layer, x.reshape(1, -1), np.array([y], dtype=np.int64))
    buf.close()
    return {name: {k: s.state_dict() for k, s in groups.items()} for name, groups in states.items()}, ids, counts


def shard_scores(prep: Any, classifiers: dict[str, list[Any]], shard: str) -> dict[str, dict[Key, dict[str, Any]]]:
    """Pass 2 over one shard: the classifiers' right and scored dev/test items, {reference: {(speaker, split): ScoreCounts state}}.

    ``classifiers[ref][layer]`` is a fitted :class:`~layerlab.profile.solve.RidgeClassifier` (a reference without one is absent);
    items whose class never occurred in training are counted apart (``unseen``), not scored.
    """
    with _one_thread():
        return _shard_scores(prep, classifiers, shard)


class HeldOut:
    """Dev and test items kept from pass 1 (float32, per reference, group and layer), so pass 2 needs no second read.

    Kept while they fit in ``budget_bytes``; past it they are dropped and pass 2 reads the shards again.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget = int(budget_bytes)
        self.nbytes = 0
        self.items: dict[tuple[str, Key, int], tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self.complete = self.budget > 0

    def add(self, ref: str, key: Key, layer: int, x: np.ndarray, y: np.ndarray) -> None:
        if not self.complete or not len(y):
            return
        x = np.asarray(x, dtype=np.float32)
        self.nbytes += x.nbytes + y.nbytes
        if self.nbytes > self.budget:
            self.complete, self.items = False, {}
            return
        xs, ys = self.items.setdefault((ref, key, layer), ([], []))
        xs.append(x)
        ys.append(np.asarray(y, dtype=np.int64))

    def merge(self, other: "HeldOut") -> "HeldOut":
        """Add another shard's held items (the budget counts them all)."""
        if not other.complete or not self.complete:
            self.complete, self.items = False, {}
            return self
        self.nbytes += other.nbytes
        if self.nbytes > self.budget:
            self.complete, self.items = False, {}
            return self
        for slot, (xs, ys) in other.items.items():
            mine = self.items.setdefault(slot, ([], []))
            mine[0].extend(xs)
            mine[1].extend(ys)
        return self


class _Scorer:
    """Pass 2's counts: every item a classifier scores, right or wrong per ridge value, and the items of unseen classes."""

    def __init__(self, classifiers: dict[str, list[Any]]) -> None:
        self.classifiers = classifiers
        self.states: dict[str, dict[Key, ScoreCounts]] = {name: {} for name in classifiers}
        self.unseen: dict[str, dict[Key, np.ndarray]] = {name: {} for name in classifiers}

    def score(self, name: str, key: Key, layer: int, x: np.ndarray, y: np.ndarray) -> None:
        clf = self.classifiers[name][layer]
        num_layers = len(self.classifiers[name])
        ok = clf.seen[y]
        miss = self.unseen[name].setdefault(key, np.zeros(num_layers, dtype=np.int64))
        miss[layer] += int((~ok).sum())
        if not ok.any():
            return
        pred = clf.predict(x[ok])
        target = self.states[name].setdefault(key, ScoreCounts(num_layers, len(clf.eps)))
        target.update(layer, (pred == y[ok][:, None]).sum(0), int(ok.sum()))

    def result(self) -> dict[str, dict[Key, dict[str, Any]]]:
        out: dict[str, dict[Key, dict[str, Any]]] = {}
        for name, fitted in self.classifiers.items():
            out[name] = {}
            for key in set(self.states[name]) | set(self.unseen[name]):
                doc = (self.states[name].get(key) or ScoreCounts(len(fitted), len(fitted[0].eps))).state_dict()
                doc["unseen"] = self.unseen[name].get(key, np.zeros(len(fitted), dtype=np.int64))
                out[name][key] = doc
        return out


def held_scores(classifiers: dict[str, list[Any]], held: HeldOut) -> dict[str, dict[Key, dict[str, Any]]]:
    """Pass 2 from the items pass 1 kept in memory (same counts as :func:`shard_scores` over every shard)."""
    scorer = _Scorer(classifiers)
    with _one_thread():
        for (name, key, layer), (xs, ys) in held.items.items():
            if name in classifiers:
                scorer.score(name, key, layer, np.concatenate(xs), np.concatenate(ys))
    return scorer.result()


def _shard_scores(prep: Any, classifiers: dict[str, list[Any]], shard: str) -> dict[str, dict[Key, dict[str, Any]]]:
    scorer = _Scorer(classifiers)
    refs = {r.name: r for r in prep.refs if r.name in classifiers}
    frame_refs = [r for r in refs.values() if r.level != "utterance"]
    if frame_refs:
        for uid, speaker, layers, index in _frame_items(prep, shard):
            for ref in frame_refs:
                split = ref.splits.get(uid, "")
                if uid not in ref.labels or split not in ("dev", "test"):
                    continue
                for layer, x, y, _ in frame_level_items(prep, ref, uid, layers, index):
                    if len(y):
                        scorer.score(ref.name, (speaker, split), layer, x, y)
    utt_refs = [r for r in refs.values() if r.level == "utterance"]
    if utt_refs:
        from layerlab.cka.cache_input import read_utterances

        held: dict[tuple[str, Key], tuple[list[list[np.ndarray]], list[int]]] = {}  # one prediction per group and layer, not per utterance
        for utt in read_utterances(shard, prep.info, "utterance"):
            speaker = prep.speaker_of(utt)
            for ref in utt_refs:
                split = ref.splits.get(utt.id, "")
                if utt.id not in ref.labels or split not in ("dev", "test"):
                    continue
                items, ys = held.setdefault((ref.name, (speaker, split)), ([[] for _ in utt.layers], []))
                for layer, x in enumerate(utt.layers):
                    items[layer].append(x.reshape(-1))
                ys.append(int(ref.labels[utt.id]))
        for (name, key), (items, ys) in held.items():
            for layer, rows in enumerate(items):
                scorer.score(name, key, layer, np.stack(rows), np.asarray(ys, dtype=np.int64))
    return scorer.result()

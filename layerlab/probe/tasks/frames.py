"""Frames-tier batches: stream utterances through a bounded shuffle buffer, align layers, pad, check finiteness.

Also the training-split statistics the weighted sum needs: ``"scale"`` divisors (:func:`train_scales`)
and the spread of each layer's term for its contribution share (:func:`frames_spread`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch

from layerlab.probe.featurizer import WeightedSum, align_frames, layer_scales
from layerlab.probe.source import ProbeSource, check_finite, shuffled


def pad(items: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``[T_i, D]`` arrays into a zero-padded float32 ``[B, T_max, D]`` tensor and lengths ``[B]``."""
    lengths = torch.tensor([x.shape[0] for x in items], dtype=torch.long)
    out = torch.zeros(len(items), int(lengths.max()) if len(items) else 0, items[0].shape[1] if items else 0)
    for i, x in enumerate(items):
        out[i, : x.shape[0]] = torch.from_numpy(np.asarray(x, dtype=np.float32))
    return out, lengths


def aligned_utterances(source: ProbeSource, task: str, layers: Sequence[str], ids: set[str], *,
                       shuffle_buffer: int = 0, seed: int = 0, hold_mb: float = 0) -> Iterator[tuple[str, list[np.ndarray]]]:
    """(id, per-layer frames on one common timeline) for ``ids``; shuffled through a bounded buffer when asked.

    With ``hold_mb > 0`` the frames a complete pass decoded are kept in this process, per layer and
    utterance as stored (fp16, not yet aligned), while everything held fits in ``hold_mb`` MiB: later
    epochs, and other probes of the same layers (the per-layer probes after the weighted sum), read
    memory instead of decoding the frames tier again. Larger selections keep streaming.
    """
    store = _store(source)
    stream: Iterator[tuple[str, list[np.ndarray]]] = (store.serve(layers, ids) if store.holds(layers, ids)
                                                     else _read(source, task, layers, ids, store, hold_mb))
    rates = {l.name: l.frame_rate_hz for l in source.layers}
    aligned = ((uid, align_frames(frames, [rates[n] for n in layers])) for uid, frames in stream)
    if shuffle_buffer > 1:
        aligned = shuffled(aligned, shuffle_buffer, seed)
    yield from aligned


class HeldFrames:
    """Decoded frames kept in one process: layer -> utterance -> ``[T, D]`` as stored, plus the storage order."""

    def __init__(self) -> None:
        self.frames: dict[str, dict[str, np.ndarray]] = {}
        self.position: dict[str, int] = {}
        self.nbytes = 0

    def holds(self, layers: Sequence[str], ids: set[str]) -> bool:
        """True when every requested utterance of every requested layer is held."""
        return all(n in self.frames and ids <= self.frames[n].keys() for n in layers)

    def serve(self, layers: Sequence[str], ids: set[str]) -> Iterator[tuple[str, list[np.ndarray]]]:
        """The held utterances of ``ids`` in storage order (as a read would give them)."""
        for uid in sorted(ids & self.position.keys(), key=self.position.__getitem__):
            yield uid, [self.frames[n][uid] for n in layers]

    def new_bytes(self, layers: Sequence[str], uid: str, frames: list[np.ndarray]) -> int:
        """Bytes holding ``uid``'s frames of ``layers`` would add (layers already held for it count nothing)."""
        return sum(x.nbytes for n, x in zip(layers, frames) if uid not in self.frames.get(n, {}))

    def add(self, layers: Sequence[str], pass_: list[tuple[str, list[np.ndarray]]], nbytes: int) -> None:
        """Keep a complete pass whose :meth:`new_bytes` sum to ``nbytes``."""
        for uid, fr in pass_:
            self.position.setdefault(uid, len(self.position))
            for n, x in zip(layers, fr):
                self.frames.setdefault(n, {})[uid] = x
        self.nbytes += nbytes


def _store(source: ProbeSource) -> HeldFrames:
    """The per-process store attached to the source (never pickled with it)."""
    store = getattr(source, "_held_frames", None)
    if store is None:
        store = HeldFrames()
        source._held_frames = store  # type: ignore[attr-defined]
    return store


def _read(source: ProbeSource, task: str, layers: Sequence[str], ids: set[str], store: HeldFrames,
          hold_mb: float) -> Iterator[tuple[str, list[np.ndarray]]]:
    """Decode and check frames; hand the complete pass to the store when it fits the budget."""
    budget = hold_mb * 2**20
    kept: list[tuple[str, list[np.ndarray]]] | None = [] if budget > 0 else None
    added = 0
    for uid, frames in source.iter_frames(list(layers), ids):
        for name, x in zip(layers, frames):
            check_finite(source, task, uid, name, x)
        if kept is not None:
            added += store.new_bytes(layers, uid, frames)
            kept = kept if store.nbytes + added <= budget else None
            if kept is not None:
                kept.append((uid, frames))
        yield uid, frames
    if kept is not None:
        store.add(layers, kept, added)


def batched(items: Iterator[tuple[str, list[np.ndarray]]], batch_size: int) -> Iterator[tuple[list[str], list[torch.Tensor], torch.Tensor]]:
    """Group aligned utterances into padded batches: (ids, per-layer ``[B, T, D_l]``, lengths ``[B]``)."""
    buf: list[tuple[str, list[np.ndarray]]] = []

    def emit() -> tuple[list[str], list[torch.Tensor], torch.Tensor]:
        ids = [u for u, _ in buf]
        per_layer = []
        lengths = torch.zeros(0, dtype=torch.long)
        for k in range(len(buf[0][1])):
            x, lengths = pad([f[k] for _, f in buf])
            per_layer.append(x)
        return ids, per_layer, lengths

    for item in items:
        buf.append(item)
        if len(buf) == batch_size:
            yield emit()
            buf = []
    if buf:
        yield emit()


def pooled_stats(source: ProbeSource, layers: Sequence[str], ids: Sequence[str]) -> tuple[list[np.ndarray], list[np.ndarray] | None] | None:
    """Per-layer pooled means (and stds, None when the tier has none) of ``ids``; None without a pooled tier or when ids are missing."""
    if "pooled" not in source.tiers:
        return None
    pooled = source.pooled()
    where = {u: i for i, u in enumerate(pooled.ids)}
    if not ids or any(u not in where for u in ids):
        return None
    index = np.array([where[u] for u in ids])
    means = [np.asarray(pooled.mean[n])[index] for n in layers]
    stds = [np.asarray(pooled.std[n])[index] for n in layers] if all(n in pooled.std for n in layers) else None
    return means, stds


def train_scales(source: ProbeSource, task: str, layers: Sequence[str], ids: Sequence[str], hold_mb: float = 0) -> np.ndarray:
    """``"scale"``-mode divisors of ``layers`` over the training utterances ``ids``: from the pooled tier (exact), else one pass over frames."""
    stats = pooled_stats(source, layers, ids)
    if stats is not None:
        return layer_scales(*stats)
    store, wanted = _store(source), set(ids)
    means: list[list[np.ndarray]] = [[] for _ in layers]
    stds: list[list[np.ndarray]] = [[] for _ in layers]
    for _, frames in (store.serve(layers, wanted) if store.holds(layers, wanted) else _read(source, task, layers, wanted, store, hold_mb)):
        for k, x in enumerate(frames):
            x = np.asarray(x, dtype=np.float64)
            if len(x):
                means[k].append(x.mean(axis=0))
                stds[k].append(x.std(axis=0))
    dims = [max(1, next(l.dim for l in source.layers if l.name == n)) for n in layers]
    return layer_scales([np.stack(m) if m else np.zeros((0, d)) for m, d in zip(means, dims)],
                        [np.stack(v) if v else np.zeros((0, d)) for v, d in zip(stds, dims)])


def split_batches(source: ProbeSource, task: str, layers: Sequence[str], ids: Sequence[str], batch_size: int, *,
                  shuffle_buffer: int = 0, seed: int = 0, hold_mb: float = 0) -> Iterable[tuple[list[str], list[torch.Tensor], torch.Tensor]]:
    """Padded batches of ``ids``' aligned frames (buffer-shuffled when ``shuffle_buffer``): what the sequence probes (PR, ASR) train and score on."""
    stream = aligned_utterances(source, task, layers, set(ids), shuffle_buffer=shuffle_buffer, seed=seed, hold_mb=hold_mb)
    return batched(stream, batch_size)


def frames_spread(featurizer: WeightedSum, source: ProbeSource, task: str, layers: Sequence[str], ids: Sequence[str],
                  batch_size: int = 32, hold_mb: float = 0) -> np.ndarray:
    """Exact ``E||f_l(h) - E f_l(h)||^2`` per layer over the frames of ``ids`` on the common timeline (what the probe sums)."""
    stream = aligned_utterances(source, task, layers, set(ids), hold_mb=hold_mb)
    return featurizer.spread_frames((frames, lengths) for _, frames, lengths in batched(stream, batch_size))

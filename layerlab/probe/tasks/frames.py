"""Frames-tier batches: stream utterances through a bounded shuffle buffer, align layers, pad, check finiteness."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from layerlab.probe.featurizer import align_frames
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

    With ``hold_mb > 0`` the aligned frames of a complete pass are kept in this process when they fit in
    ``hold_mb`` MiB, so later epochs read memory instead of decoding the frames tier again (probes run
    tens of epochs over the same small splits); larger selections keep streaming.
    """
    key = (tuple(layers), frozenset(ids))
    held = _held(source).get(key)
    stream: Iterator[tuple[str, list[np.ndarray]]] = iter(held) if held is not None else _read_aligned(source, task, layers, ids, key, hold_mb)
    if shuffle_buffer > 1:
        stream = shuffled(stream, shuffle_buffer, seed)
    yield from stream


def _held(source: ProbeSource) -> dict[Any, list[tuple[str, list[np.ndarray]]]]:
    """The per-process store of complete aligned passes, attached to the source (never pickled with it)."""
    store = getattr(source, "_held_frames", None)
    if store is None:
        store = {}
        source._held_frames = store  # type: ignore[attr-defined]
    return store


def _read_aligned(source: ProbeSource, task: str, layers: Sequence[str], ids: set[str], key: Any,
                  hold_mb: float) -> Iterator[tuple[str, list[np.ndarray]]]:
    """Decode, check and align frames; remember the whole pass when it completes within the budget."""
    rates = {l.name: l.frame_rate_hz for l in source.layers}
    budget = hold_mb * 2**20
    kept: list[tuple[str, list[np.ndarray]]] | None = [] if budget > 0 else None
    size = 0
    for uid, frames in source.iter_frames(list(layers), ids):
        for name, x in zip(layers, frames):
            check_finite(source, task, uid, name, x)
        item = (uid, align_frames(frames, [rates[n] for n in layers]))
        if kept is not None:
            size += sum(x.nbytes for x in item[1])
            kept = kept if size <= budget else None
            if kept is not None:
                kept.append(item)
        yield item
    if kept is not None:
        _held(source)[key] = kept


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

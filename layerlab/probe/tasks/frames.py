"""Frames-tier batches: stream utterances through a bounded shuffle buffer, align layers, pad, check finiteness."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

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
                       shuffle_buffer: int = 0, seed: int = 0) -> Iterator[tuple[str, list[np.ndarray]]]:
    """(id, per-layer frames on one common timeline) for ``ids``; shuffled through a bounded buffer when asked."""
    rates = {l.name: l.frame_rate_hz for l in source.layers}
    stream = source.iter_frames(list(layers), ids)
    if shuffle_buffer > 1:
        stream = shuffled(stream, shuffle_buffer, seed)
    for uid, frames in stream:
        for name, x in zip(layers, frames):
            check_finite(source, task, uid, name, x)
        yield uid, align_frames(frames, [rates[n] for n in layers])


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

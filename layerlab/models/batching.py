"""Turning lists of utterances into model calls: padding, length buckets, and the unbatched mode.

Modes (recorded by the extraction stage in cache metadata):
``batched`` pads whatever arrives together; ``bucketed`` sorts by length and groups utterances of
similar length (little padding); ``unbatched`` runs one utterance at a time (exact for every model,
including GroupNorm models such as HuBERT/WavLM Base whose frames change with padding).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from layerlab.batching import MODES, Mode, length_buckets
from layerlab.batching import plan_batches as _plan
from layerlab.models.base import LayeredModel

__all__ = ["MODES", "Mode", "extract_all", "iter_layer_outputs", "length_buckets", "pad_batch", "plan_batches"]


def pad_batch(wavs: Sequence[torch.Tensor | np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D waveforms with zeros into [B, S_max]; return (wavs, lengths)."""
    if len(wavs) == 0:
        raise ValueError("pad_batch: no waveforms")
    tensors = [torch.as_tensor(np.asarray(w) if not isinstance(w, torch.Tensor) else w, dtype=torch.float32) for w in wavs]
    for i, t in enumerate(tensors):
        if t.dim() != 1:
            raise ValueError(f"pad_batch: waveform {i} must be 1-D (mono samples), got shape {tuple(t.shape)}")
    lengths = torch.tensor([t.numel() for t in tensors], dtype=torch.long)
    out = torch.zeros(len(tensors), int(lengths.max()), dtype=torch.float32)
    for i, t in enumerate(tensors):
        out[i, : t.numel()] = t
    return out, lengths


def plan_batches(lengths: Sequence[int], mode: Mode = "bucketed", batch_size: int = 16, **bucket_kwargs) -> list[list[int]]:
    """Index batches for one of the modes (see :mod:`layerlab.batching`)."""
    return _plan(lengths, mode, max_batch_size=batch_size, **bucket_kwargs)


def iter_layer_outputs(
    model: LayeredModel,
    wavs: Sequence[torch.Tensor | np.ndarray],
    mode: Mode = "bucketed",
    batch_size: int = 16,
    **bucket_kwargs,
) -> Iterator[tuple[int, list[torch.Tensor]]]:
    """Yield ``(index, [valid frames of each layer, [T_l, D_l] on CPU])`` for every utterance."""
    lengths = [int(np.asarray(w).shape[-1]) if not isinstance(w, torch.Tensor) else int(w.shape[-1]) for w in wavs]
    for batch in plan_batches(lengths, mode, batch_size, **bucket_kwargs):
        padded, lens = pad_batch([wavs[i] for i in batch])
        out = model(padded, lens)
        for j, i in enumerate(batch):
            yield i, [h.cpu() for h in out.unpad(j)]


def extract_all(
    model: LayeredModel, wavs: Sequence[torch.Tensor | np.ndarray], mode: Mode = "bucketed", batch_size: int = 16
) -> list[list[torch.Tensor]]:
    """Per-utterance, per-layer valid frames for a list of waveforms, in input order."""
    results: list[list[torch.Tensor] | None] = [None] * len(wavs)
    for i, layers in iter_layer_outputs(model, wavs, mode, batch_size):
        results[i] = layers
    return results  # type: ignore[return-value]

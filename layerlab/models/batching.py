"""Turning lists of utterances into model calls: padding, length buckets, and the unbatched mode.

Modes (recorded by the extraction stage in cache metadata):
``batched`` pads whatever arrives together; ``bucketed`` sorts by length and groups utterances of
similar length (little padding); ``unbatched`` runs one utterance at a time (exact for every model,
including GroupNorm models such as HuBERT/WavLM Base whose frames change with padding).
"""

from __future__ import annotations

from typing import Iterator, Literal, Sequence

import numpy as np
import torch

from layerlab.models.base import LayeredModel

Mode = Literal["batched", "bucketed", "unbatched"]
MODES: tuple[str, ...] = ("batched", "bucketed", "unbatched")


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


def length_buckets(
    lengths: Sequence[int], max_batch_size: int = 16, max_batch_samples: int | None = None, max_ratio: float = 1.25
) -> list[list[int]]:
    """Group indices into batches of similar length (sorted, longest first).

    A batch closes when it holds ``max_batch_size`` items, when its padded size
    (``n * longest``) would exceed ``max_batch_samples``, or when the longest item is more than
    ``max_ratio`` times the shortest. Every index appears exactly once.
    """
    if max_batch_size < 1:
        raise ValueError("length_buckets: max_batch_size must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current:
            longest = int(lengths[current[0]])
            too_many = len(current) >= max_batch_size
            too_big = max_batch_samples is not None and (len(current) + 1) * longest > max_batch_samples
            too_uneven = longest > max_ratio * max(int(lengths[i]), 1)
            if too_many or too_big or too_uneven:
                batches.append(current)
                current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def plan_batches(lengths: Sequence[int], mode: Mode = "bucketed", batch_size: int = 16, **bucket_kwargs) -> list[list[int]]:
    """Index batches for one of the three modes (see module docstring)."""
    if mode == "unbatched":
        return [[i] for i in range(len(lengths))]
    if mode == "batched":
        return [list(range(s, min(s + batch_size, len(lengths)))) for s in range(0, len(lengths), batch_size)]
    if mode == "bucketed":
        return length_buckets(lengths, max_batch_size=batch_size, **bucket_kwargs)
    raise ValueError(f"unknown batching mode {mode!r}; choose one of {', '.join(MODES)}")


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

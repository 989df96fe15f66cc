"""Turn model outputs into aligned frame matrices: drop padding, pool to a common rate, mask silence.

Alignment rule for layers with different frame rates (e.g. ECAPA 100 Hz vs WavLM 50 Hz): every
layer is average-pooled over non-overlapping windows of ``rate / slowest_rate`` frames (must be an
integer), a trailing partial window is dropped, and all layers are then truncated to the shortest
valid length of each utterance (models rarely differ by more than one frame after pooling).
Padding frames never reach a statistic: only frames ``t < length`` of each utterance are kept.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from layerlab.frames import masked_mean, valid_mask
from layerlab.cka.tensors import as_tensor


def _pool_factor(rate: float, slowest: float, layer: int) -> int:
    factor = rate / slowest
    if abs(factor - round(factor)) > 1e-6 or round(factor) < 1:
        raise ValueError(
            f"layer {layer}: frame rate {rate} Hz is not an integer multiple of the slowest rate "
            f"{slowest} Hz, so it cannot be average-pooled onto it"
        )
    return int(round(factor))


def average_pool(x: torch.Tensor, lengths: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool ``x [B, T, D]`` over windows of ``factor`` frames; lengths become ``lengths // factor``."""
    if factor == 1:
        return x, lengths
    b, t, d = x.shape
    t_out = t // factor
    pooled = x[:, : t_out * factor].reshape(b, t_out, factor, d).mean(dim=2)
    return pooled, torch.div(lengths, factor, rounding_mode="floor")


def _lengths_for(lengths: Any, layer: int, batch: int, frames: int) -> torch.Tensor:
    if lengths is None:
        return torch.full((batch,), frames, dtype=torch.long)
    if isinstance(lengths, (list, tuple)) and len(lengths) > 0 and not isinstance(lengths[0], (int, float)):
        lengths = lengths[layer]
    lt = as_tensor(lengths).to("cpu", torch.long).reshape(-1)
    if lt.numel() != batch:
        raise ValueError(f"lengths: {lt.numel()} entries for layer {layer} but its batch has {batch} utterances")
    if (lt < 0).any() or (lt > frames).any():
        raise ValueError(f"lengths: layer {layer} lengths must lie in [0, {frames}] (its padded length)")
    return lt


def flatten_frames(
    layers: Sequence[Any],
    lengths: Any = None,
    frame_rates_hz: Sequence[float] | None = None,
    frame_mask: Any = None,
) -> list[torch.Tensor]:
    """Aligned valid frames of every layer as a list of ``(n, d_l)`` tensors (same n for all layers).

    ``layers`` holds either padded ``[B, T_l, D_l]`` tensors (with ``lengths`` ``[B]``, or one
    ``[B]`` per layer) or already-flat ``(n, d_l)`` matrices. ``frame_mask`` (bool) keeps a subset
    of frames, e.g. speech frames from an alignment: ``[B, T]`` at the slowest rate, or ``(n,)``.
    """
    if len(layers) == 0:
        raise ValueError("layers: need at least one layer")
    tensors = [as_tensor(x) for x in layers]
    ndims = {t.dim() for t in tensors}
    if ndims == {2}:
        return _flat_2d(tensors, lengths, frame_mask)
    if ndims != {3}:
        raise ValueError(f"layers: expected all (n, d) or all [B, T, D] tensors, got dims {[t.dim() for t in tensors]}")
    batch = tensors[0].shape[0]
    for i, t in enumerate(tensors):
        if t.shape[0] != batch:
            raise ValueError(f"layers: layer {i} has batch {t.shape[0]} but layer 0 has {batch}")
    lens = [_lengths_for(lengths, i, batch, t.shape[1]) for i, t in enumerate(tensors)]
    if frame_rates_hz is not None:
        if len(frame_rates_hz) != len(tensors):
            raise ValueError(f"frame_rates_hz: {len(frame_rates_hz)} rates for {len(tensors)} layers")
        slowest = min(frame_rates_hz)
        pooled = [average_pool(t, ln.to(t.device), _pool_factor(r, slowest, i)) for i, (t, ln, r) in enumerate(zip(tensors, lens, frame_rates_hz))]
        tensors = [p[0] for p in pooled]
        lens = [p[1].cpu() for p in pooled]
    else:
        frames = {t.shape[1] for t in tensors}
        if len(frames) > 1:
            raise ValueError(
                f"layers: padded lengths differ across layers ({sorted(frames)} frames); pass frame_rates_hz "
                "so faster layers are average-pooled to the slowest rate"
            )
    t_common = min(t.shape[1] for t in tensors)
    valid_len = torch.stack(lens).min(dim=0).values.clamp(max=t_common)
    keep = valid_mask(valid_len, t_common)
    if frame_mask is not None:
        fm = as_tensor(frame_mask).to("cpu", torch.bool)
        if fm.dim() != 2 or fm.shape[0] != batch or fm.shape[1] < t_common:
            raise ValueError(f"frame_mask: expected bool [{batch}, >={t_common}] at the slowest frame rate, got {tuple(fm.shape)}")
        keep = keep & fm[:, :t_common]
    return [t[:, :t_common][keep.to(t.device)] for t in tensors]


def _flat_2d(tensors: list[torch.Tensor], lengths: Any, frame_mask: Any) -> list[torch.Tensor]:
    if lengths is not None:
        raise ValueError("lengths: only meaningful for padded [B, T, D] layers, got flat (n, d) frames")
    n = tensors[0].shape[0]
    for i, t in enumerate(tensors):
        if t.shape[0] != n:
            raise ValueError(f"layers: layer {i} has {t.shape[0]} frames but layer 0 has {n}; rows must be aligned frames")
    if frame_mask is None:
        return tensors
    fm = as_tensor(frame_mask).to("cpu", torch.bool).reshape(-1)
    if fm.numel() != n:
        raise ValueError(f"frame_mask: {fm.numel()} entries for {n} frames")
    return [t[fm.to(t.device)] for t in tensors]


def utterance_means(layers: Sequence[Any], lengths: Any = None) -> list[torch.Tensor]:
    """Per-utterance mean over valid frames of every layer: ``[B, T_l, D_l]`` -> ``(B, D_l)`` (utterance-level CKA)."""
    tensors = [as_tensor(x) for x in layers]
    if any(t.dim() != 3 for t in tensors):
        raise ValueError("layers: utterance_means needs padded [B, T, D] layers")
    batch = tensors[0].shape[0]
    out = []
    for i, t in enumerate(tensors):
        ln = _lengths_for(lengths, i, batch, t.shape[1])
        if (ln == 0).any():
            raise ValueError(f"lengths: layer {i} has an utterance with zero valid frames; its mean is undefined")
        out.append(masked_mean(t if t.is_floating_point() else t.to(torch.float32), ln))
    return out

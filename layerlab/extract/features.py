"""From a model's padded LayerOutput to what the cache stores: valid fp16 frames and float32 mean/std."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from layerlab.models.base import LayerOutput


@dataclass
class UtteranceFeatures:
    """One utterance's cache content: per-layer mean, std, valid-frame count and (optional) fp16 frames."""

    means: list[np.ndarray]  # float32 [D_l]
    stds: list[np.ndarray]  # float32 [D_l]
    num_frames: list[int]
    frames: list[np.ndarray] | None  # float16 [T_l, D_l], valid frames only


def pooled_stats(hidden: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std (ddof=0) over the valid frames of ``hidden [B, T, D]``; each [B, D] float32."""
    h = hidden.to(torch.float32)
    n = lengths.to(h.device).clamp(min=1)
    mask = (torch.arange(h.shape[1], device=h.device)[None, :] < n[:, None]).to(h.dtype).unsqueeze(-1)
    count = n.to(h.dtype)[:, None]
    mean = (h * mask).sum(dim=1) / count
    var = (((h - mean[:, None, :]) * mask) ** 2).sum(dim=1) / count
    return mean, var.sqrt()


def split_features(out: LayerOutput, keep_frames: bool) -> list[UtteranceFeatures]:
    """Per-utterance features of a batch, in batch order (padding frames never leave this function)."""
    batch = out.hidden[0].shape[0]
    means, stds, counts, frames = [], [], [], []
    for h, n in zip(out.hidden, out.lengths):
        mean, std = pooled_stats(h, n)
        means.append(mean.cpu().numpy())
        stds.append(std.cpu().numpy())
        counts.append(n.cpu().numpy())
        if keep_frames:
            frames.append(h.to(torch.float16).cpu().numpy())
    result = []
    for b in range(batch):
        nf = [int(c[b]) for c in counts]
        result.append(
            UtteranceFeatures(
                means=[m[b] for m in means],
                stds=[s[b] for s in stds],
                num_frames=nf,
                frames=[f[b, : nf[i]] for i, f in enumerate(frames)] if keep_frames else None,
            )
        )
    return result

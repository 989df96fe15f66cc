"""From a model's padded LayerOutput to what the cache stores: valid fp16 frames and float32 mean/std."""

from __future__ import annotations

import torch

from layerlab.cache.writer import UtteranceFeatures
from layerlab.frames import masked_mean_std
from layerlab.models.base import LayerOutput


def split_features(out: LayerOutput, keep_frames: bool) -> list[UtteranceFeatures]:
    """Per-utterance features of a batch, in batch order (padding frames never leave this function)."""
    batch = out.hidden[0].shape[0]
    means, stds, counts, frames = [], [], [], []
    for h, n in zip(out.hidden, out.lengths):
        mean, std = masked_mean_std(h, n)
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

"""From a model's padded LayerOutput to what the cache stores: valid fp16 frames and float32 mean/std.

On a CPU actor the statistics are computed per utterance on its valid frames, in numpy (mean, then
the mean of in-place squared deviations): single-threaded, so they never wake torch's OpenMP pool
for small ops (with the pool's threads competing for the actor's cores, that cost as much as 10 %
of a WavLM-Base forward), and no padded ``[B, T, D]`` temporaries. On CUDA the masked batched form
(:func:`layerlab.frames.masked_mean_std`) is used: a few kernels per layer instead of ``4 B``.
Only valid frames are converted to fp16.
"""

from __future__ import annotations

import numpy as np
import torch

from layerlab.cache.writer import UtteranceFeatures
from layerlab.frames import masked_mean_std
from layerlab.models.base import LayerOutput


def valid_mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std (ddof=0) over the rows of ``x [T, D]`` in float32 (zeros when T = 0)."""
    if x.shape[0] == 0:
        zero = np.zeros(x.shape[1], dtype=np.float32)
        return zero, zero
    x = x.astype(np.float32, copy=False)
    mean = x.mean(axis=0)
    dev = x - mean
    np.square(dev, out=dev)
    return mean, np.sqrt(dev.mean(axis=0))


def _layer_stats(h: torch.Tensor, lengths: torch.Tensor, counts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """``[B, D]`` means and stds of one layer's valid frames."""
    if h.device.type == "cuda":
        mean, std = masked_mean_std(h, lengths)
        return mean.cpu().numpy(), std.cpu().numpy()
    x = h.detach().numpy()
    pairs = [valid_mean_std(x[b, :k]) for b, k in enumerate(counts)]
    return np.stack([m for m, _ in pairs]), np.stack([s for _, s in pairs])


def split_features(out: LayerOutput, keep_frames: bool) -> list[UtteranceFeatures]:
    """Per-utterance features of a batch, in batch order (padding frames never leave this function)."""
    batch = out.hidden[0].shape[0]
    counts = [[int(c) for c in n.cpu().tolist()] for n in out.lengths]
    means, stds, frames = [], [], []
    for h, n, c in zip(out.hidden, out.lengths, counts):
        mean, std = _layer_stats(h, n, c)
        means.append(mean)
        stds.append(std)
        if keep_frames:  # fp16 on the device for CUDA; on CPU numpy's single-threaded cast of the valid frames only
            frames.append(h.to(torch.float16).cpu().numpy() if h.device.type == "cuda" else h.detach().numpy())
    return [
        UtteranceFeatures(
            means=[m[b] for m in means],
            stds=[s[b] for s in stds],
            num_frames=[c[b] for c in counts],
            frames=[f[b, : c[b]].astype(np.float16, copy=False) for f, c in zip(frames, counts)] if keep_frames else None,
        )
        for b in range(batch)
    ]

"""From a model's padded LayerOutput to what the cache stores: valid fp16 frames and float32 mean/std.

On a CPU actor the statistics are computed per utterance on its valid frames, in numpy (mean, then
the mean of in-place squared deviations): single-threaded, so they never wake torch's OpenMP pool
for small ops (with the pool's threads competing for the actor's cores, that cost as much as 10 %
of a WavLM-Base forward), and no padded ``[B, T, D]`` temporaries. On CUDA the masked batched form
(:func:`layerlab.frames.masked_mean_std`) is used: a few kernels per layer instead of ``4 B``.
The fp16 cast is one torch op per layer (vectorised: 5x numpy's per-utterance cast); each
utterance's valid frames are then a view of it. Non-finite activations are found from the means
(any NaN/Inf in an utterance's valid frames makes its mean non-finite), so a healthy batch costs no
extra pass over its frames.
"""

from __future__ import annotations

import numpy as np
import torch

from layerlab.cache.writer import UtteranceFeatures
from layerlab.frames import masked_mean_std, valid_mask
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
    """Per-utterance features of a batch, in batch order (padding frames never leave this function).

    Raises FloatingPointError naming the layer when a valid frame is NaN or Inf.
    """
    batch = out.hidden[0].shape[0]
    counts = [[int(c) for c in n.cpu().tolist()] for n in out.lengths]
    means, stds, frames = [], [], []
    for name, h, n, c in zip(out.names, out.hidden, out.lengths, counts):
        mean, std = _layer_stats(h, n, c)
        if not np.isfinite(mean).all() and not valid_frames_finite(h, n):
            raise FloatingPointError(f"non-finite activations in layer {name}")
        means.append(mean)
        stds.append(std)
        if keep_frames:
            frames.append(h.detach().to(torch.float16).cpu().numpy())
    return [
        UtteranceFeatures(
            means=[m[b] for m in means],
            stds=[s[b] for s in stds],
            num_frames=[c[b] for c in counts],
            frames=[f[b, : c[b]] for f, c in zip(frames, counts)] if keep_frames else None,
        )
        for b in range(batch)
    ]


def valid_frames_finite(h: torch.Tensor, lengths: torch.Tensor) -> bool:
    """Whether every valid frame of ``h [B, T, D]`` is finite (the exact check, when a mean is not: it may only have overflowed)."""
    return bool(torch.isfinite(h[valid_mask(lengths.to(h.device), h.shape[1])]).all())

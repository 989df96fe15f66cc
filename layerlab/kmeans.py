"""k-means: one implementation for every stage (HuBERT training targets, training-free MI profiles).

``kmeans`` fits centroids by Lloyd's algorithm from a k-means++ start (float64, deterministic for
a seed); ``assign`` gives each row its nearest centroid in bounded chunks, so a pass over many
frames never forms an ``n x k`` distance matrix larger than ``chunk x k``.
"""

from __future__ import annotations

from typing import Any

import torch


def kmeans(x: torch.Tensor, k: int, iters: int, seed: int) -> torch.Tensor:
    """Centroids [k, D] by Lloyd's algorithm from a k-means++ start (float64, deterministic for ``seed``).

    Squared distances are ``||x||^2 - 2 x.c + ||c||^2``: one GEMV per k-means++ draw and one GEMM per Lloyd
    step (a third of the time of pairwise ``cdist``), clipped at 0 against rounding.
    """
    if not 0 < k <= len(x):
        raise ValueError(f"k-means: k={k} clusters need at least k rows, got {len(x)}")
    g = torch.Generator().manual_seed(seed)
    x = x.double()
    xx = (x * x).sum(1)

    def dist2(c: torch.Tensor) -> torch.Tensor:  # [n] or [n, m] squared distances to one or m centres
        return (xx[:, None] - 2 * x @ c.T + (c * c).sum(-1)).clamp_min(0) if c.dim() == 2 else (xx - 2 * x @ c + c @ c).clamp_min(0)

    centers = [x[torch.randint(len(x), (1,), generator=g)].squeeze(0)]
    d2 = dist2(centers[0])
    for _ in range(1, k):
        weights = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / len(d2))
        i = torch.multinomial(weights, 1, generator=g)
        centers.append(x[i].squeeze(0))
        d2 = torch.minimum(d2, dist2(centers[-1]))
    c = torch.stack(centers)
    for _ in range(iters):
        assign = dist2(c).argmin(1)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = counts == 0
        c = torch.where(empty[:, None], c, sums / counts.clamp(min=1)[:, None])
    return c.float()


def assign(x: Any, centroids: Any, chunk: int = 8192) -> torch.Tensor:
    """Index of the nearest centroid (Euclidean) of every row of ``x`` [n, D], computed ``chunk`` rows at a time."""
    x = torch.as_tensor(x)
    c = torch.as_tensor(centroids).to(x.device, torch.float32)
    out = torch.empty(len(x), dtype=torch.long, device=x.device)
    half_norms = 0.5 * (c * c).sum(1)
    for lo in range(0, len(x), chunk):
        part = x[lo : lo + chunk].to(torch.float32)
        # argmin ||x - c||^2 = argmax (x.c - ||c||^2 / 2): one GEMM per chunk
        out[lo : lo + chunk] = (part @ c.T - half_norms).argmax(1)
    return out

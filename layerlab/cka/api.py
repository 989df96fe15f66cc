"""The one-call functional API: ``cka_matrix(layers_a, layers_b=None, estimator=...)`` -> numpy matrix."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from layerlab.cka.feature_stats import FeatureCKA
from layerlab.cka.minibatch import MinibatchCKA
from layerlab.cka.tensors import as_tensor

ESTIMATORS = ("biased", "debiased", "minibatch")


def _check_layers(layers: Sequence[Any], name: str) -> list[torch.Tensor]:
    if layers is None or len(layers) == 0:
        raise ValueError(f"{name}: need a non-empty list of (n, d) arrays")
    out = [as_tensor(x) for x in layers]
    for i, t in enumerate(out):
        if t.dim() != 2:
            raise ValueError(f"{name}[{i}]: expected a 2-D (frames, dims) array, got shape {tuple(t.shape)}")
    return out


def cka_matrix(
    layers_a: Sequence[Any],
    layers_b: Sequence[Any] | None = None,
    estimator: str = "biased",
    batch_size: int | None = None,
    seed: int = 0,
    device: str | None = None,
) -> np.ndarray:
    """Linear CKA between every layer of ``layers_a`` and every layer of ``layers_b`` (default: a itself).

    Each layer is an ``(n, d_l)`` array whose rows are the same n frames for all layers of both
    lists. ``estimator``: ``biased`` (plug-in, Kornblith et al.), ``debiased`` (HSIC_1 on all n),
    ``minibatch`` (Nguyen et al.; ``batch_size`` frames per batch, default min(n, 1024), frames
    shuffled with ``seed``). Example: ``cka_matrix([h0, h1, h2])`` -> 3 x 3 matrix.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator: must be one of {ESTIMATORS}, got {estimator!r}")
    a = _check_layers(layers_a, "layers_a")
    b = None if layers_b is None else _check_layers(layers_b, "layers_b")
    layers = a + (b or [])
    n = layers[0].shape[0]
    for i, t in enumerate(layers):
        if t.shape[0] != n:
            raise ValueError(f"layers: layer {i} has {t.shape[0]} rows but layer 0 has {n}; rows must be aligned frames")
    dims_a = [t.shape[1] for t in a]
    dims_b = None if b is None else [t.shape[1] for t in b]
    if estimator == "minibatch":
        m = batch_size or min(n, 1024)
        acc = MinibatchCKA(dims_a, dims_b, batch_size=m, buffer_batches=max(1, -(-n // m) + 1), seed=seed, device=device)
        acc.update(layers)
        return acc.compute()
    if batch_size is not None:
        raise ValueError("batch_size: only used by the minibatch estimator")
    shift = torch.cat([t.to(torch.float64).mean(dim=0) for t in layers])
    feat = FeatureCKA(dims_a, dims_b, shift=shift, device=device, estimator=estimator)
    chunk = 4096  # bounds the float64 working copy of the frames
    for start in range(0, n, chunk):
        feat.update([t[start : start + chunk] for t in layers])
    return feat.compute()

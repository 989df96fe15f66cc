"""The learned weighted sum of a frozen model's layers (s3prl ``Featurizer`` semantics), plus per-layer projections.

s3prl: one weight per layer initialised to zero, ``softmax`` over layers, ``sum_l softmax(w)_l h_l``,
optional parameter-free layer norm of every layer first (off by default, as in SUPERB). Layers of
different widths get a learned linear projection each to a common width before the sum (s3prl
refuses them): the width of the head's own first linear layer (:func:`sum_width`), since a projection
to anything wider followed by that layer is the same family of linear maps at several times the cost.
Layers of different frame rates are put on one timeline by :func:`align_frames` (nearest earlier
frame; utterance-level layers are repeated on every frame).

Layer importance is reported two ways: the raw ``softmax(w)_l`` and a norm-corrected share
``softmax(w)_l * s_l / sum_k softmax(w)_k * s_k`` where ``s_l`` is the projection's Frobenius
norm (projected layers) or the layer's RMS activation norm (equal widths): raw weights mislead when
layer scales differ by 10x, as they do in WavLM.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def sum_width(dims: Sequence[int], head_width: int) -> int | None:
    """The width mixed-width layers are projected to before the sum (None: equal widths, no projection)."""
    return None if len(set(int(d) for d in dims)) <= 1 else int(head_width)


class WeightedSum(nn.Module):
    """``sum_l softmax(w)_l * f_l(h_l)`` over L layers, with ``f_l`` = layer norm and/or projection (optional)."""

    def __init__(self, dims: Sequence[int], *, normalize: bool = False, project_to: int | None = None) -> None:
        super().__init__()
        if not dims:
            raise ValueError("WeightedSum needs at least one layer")
        self.dims = [int(d) for d in dims]
        self.normalize = bool(normalize)
        if project_to is None and len(set(self.dims)) > 1:
            project_to = max(self.dims)  # mixed widths cannot be summed without a projection
        self.proj = nn.ModuleList(nn.Linear(d, project_to) for d in self.dims) if project_to is not None else None
        self.out_dim = int(project_to) if project_to is not None else self.dims[0]
        self.weights = nn.Parameter(torch.zeros(len(self.dims)))

    @property
    def num_layers(self) -> int:
        """Number of layers summed."""
        return len(self.dims)

    def forward(self, layers: Sequence[torch.Tensor]) -> torch.Tensor:
        """``layers[l]``: [..., D_l] with identical leading shapes -> [..., out_dim]."""
        if len(layers) != self.num_layers:
            raise ValueError(f"WeightedSum built for {self.num_layers} layers, got {len(layers)}")
        feats = []
        for i, h in enumerate(layers):
            if self.normalize:
                h = F.layer_norm(h, h.shape[-1:])
            if self.proj is not None:
                h = self.proj[i](h)
            feats.append(h)
        if self.num_layers == 1:
            return feats[0]  # s3prl bypasses the sum for single-layer upstreams
        stacked = torch.stack(feats, dim=0)
        shape = stacked.shape
        flat = stacked.reshape(self.num_layers, -1)
        norm_weights = F.softmax(self.weights, dim=-1)
        return (norm_weights.unsqueeze(-1) * flat).sum(dim=0).reshape(shape[1:])

    def softmax_weights(self) -> np.ndarray:
        """``softmax(w)`` as a float64 array (sums to 1)."""
        return F.softmax(self.weights.detach().double(), dim=-1).cpu().numpy()

    def importance(self, layer_scales: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(raw ``softmax(w)``, norm-corrected share): scales are ``||P_l||_F`` when projected, else ``layer_scales``."""
        raw = self.softmax_weights()
        if self.proj is not None:
            scales = np.array([float(torch.linalg.matrix_norm(p.weight.detach().double())) for p in self.proj])
        elif layer_scales is not None:
            scales = np.asarray(layer_scales, dtype=np.float64)
            if scales.shape != raw.shape:
                raise ValueError(f"layer_scales has {scales.shape[0]} entries for {raw.shape[0]} layers")
        else:
            scales = np.ones_like(raw)
        corrected = raw * scales
        total = corrected.sum()
        return raw, (corrected / total if total > 0 else raw)


def rms_norms(means: Sequence[np.ndarray], stds: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Per-layer RMS frame norm ``sqrt(E_utt ||mu||^2 + ||sigma||^2)`` from pooled means (and stds: exact)."""
    out = []
    for i, m in enumerate(means):
        sq = np.square(m.astype(np.float64)).sum(axis=1)
        if stds is not None:
            sq = sq + np.square(stds[i].astype(np.float64)).sum(axis=1)
        out.append(float(np.sqrt(sq.mean())) if sq.size else 1.0)
    return np.asarray(out)


def align_frames(frames: Sequence[np.ndarray | torch.Tensor], rates_hz: Sequence[float | None]) -> list:
    """Put every layer of one utterance on the timeline of the fastest frame layer.

    Frame ``t`` of the common timeline takes frame ``floor(t * T_l / T)`` of layer ``l`` (the frame
    covering the same relative position); utterance-level layers (rate None, one row) are repeated.
    """
    lengths = [int(f.shape[0]) for f, r in zip(frames, rates_hz) if r is not None]
    if not lengths:
        return list(frames)
    fastest = max(range(len(frames)), key=lambda i: (rates_hz[i] is not None, rates_hz[i] or 0.0, frames[i].shape[0]))
    total = int(frames[fastest].shape[0])
    out = []
    for f, r in zip(frames, rates_hz):
        n = int(f.shape[0])
        if n == total:
            out.append(f)
        elif r is None or n == 1:
            out.append(f[[0] * total] if isinstance(f, np.ndarray) else f[:1].expand(total, -1))
        else:
            index = (np.arange(total) * n) // max(total, 1)
            out.append(f[index])
    return out

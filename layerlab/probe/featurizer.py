"""The learned weighted sum of a frozen model's layers (s3prl ``Featurizer`` semantics), plus per-layer projections.

s3prl: one weight per layer initialised to zero, ``softmax`` over layers, ``sum_l softmax(w)_l h_l``,
optional parameter-free layer norm of every layer first. Layers of different widths get a learned
linear projection each to a common width before the sum (s3prl refuses them): the width of the head's
own first linear layer (:func:`sum_width`), since a projection to anything wider followed by that
layer is the same family of linear maps at several times the cost. Layers of different frame rates
are put on one timeline by :func:`align_frames` (nearest earlier frame; utterance-level layers are
repeated on every frame).

Per-layer normalisation (``normalize``), **a deviation from SUPERB's default**: s3prl's featurizer has
layer norm off, which is harmless for HuBERT/WavLM (layers of similar scale) but not for speaker
models, whose layers differ in RMS by large factors (GE2E, ECAPA): there the sum is drowned by the
loudest layer and the softmax weights cannot move far enough within a probe's budget (on the demo's
GE2E cache the weighted-sum PR probe reached 89.2 % PER against 55.2 % for its best single layer).

- ``"auto"`` (the default, resolved per task by ``ProbeConfig.for_tier``): ``layer_norm`` for the frame-by-frame heads
  (PR, ASR: they read the frames tier anyway), ``scale`` for the pooled utterance probes (KS, IC, SID, ER) and
  ASV's statistics-pooling x-vector (per-frame layer norm removed what it pools: GE2E EER 46.0 % vs 28.3 %).
- ``"scale"``: layer ``l`` is divided by one scalar ``s_l``, its spread over the probe's *training split*
  per dimension (the RMS distance of its frames from the layer's mean, :func:`spread_norms`), so every
  layer varies by ``D_l`` in total when it enters the sum (its constant offset is left to the head's bias). A scalar commutes with mean pooling, so the
  pooled-tier shortcut of the utterance heads stays exact.
- ``"layer_norm"``: parameter-free layer norm of every frame (s3prl's ``normalize=True``); per-frame, so
  it forces the frames tier.
- ``"none"``: SUPERB's default (the raw layers).

Layer importance is reported two ways: the raw ``softmax(w)_l`` and the *contribution*
``c_l = softmax(w)_l * sqrt(E||f_l(h_l) - E f_l(h_l)||^2)`` normalised to sum 1, where ``f_l`` is the
layer's normalisation then projection (:meth:`WeightedSum.contribution`): the spread of each layer's
term in the sum over the training split. It accounts for activation norms, normalisation scales and
projections; a constant offset is left out (the head's bias absorbs it), so a layer scaled to zero
contributes zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NORMALIZE_MODES = ("scale", "layer_norm", "none")  # "auto" is resolved by ProbeConfig.for_tier before a featurizer is built


def normalize_mode(value: str | bool | None) -> str:
    """The normalisation mode of a config value: old booleans map to ``layer_norm`` (True) and ``none`` (False)."""
    if value is None or value is False:
        return "none"
    if value is True:
        return "layer_norm"
    if value not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZE_MODES)} (or true/false), got {value!r}")
    return str(value)


def sum_width(dims: Sequence[int], head_width: int) -> int | None:
    """The width mixed-width layers are projected to before the sum (None: equal widths, no projection)."""
    return None if len(set(int(d) for d in dims)) <= 1 else int(head_width)


class WeightedSum(nn.Module):
    """``sum_l softmax(w)_l * f_l(h_l)`` over L layers, with ``f_l`` = normalisation (scale/layer norm) then projection (optional).

    ``scales`` (``"scale"`` mode) are the per-layer divisors, a buffer saved with the state (set them with
    :meth:`set_scales` from the training split before training; ones until then).
    """

    def __init__(self, dims: Sequence[int], *, normalize: str | bool = "none", project_to: int | None = None,
                 scales: Sequence[float] | None = None) -> None:
        super().__init__()
        if not dims:
            raise ValueError("WeightedSum needs at least one layer")
        self.dims = [int(d) for d in dims]
        self.mode = normalize_mode(normalize)
        if project_to is None and len(set(self.dims)) > 1:
            project_to = max(self.dims)  # mixed widths cannot be summed without a projection
        self.proj = nn.ModuleList(nn.Linear(d, project_to) for d in self.dims) if project_to is not None else None
        self.out_dim = int(project_to) if project_to is not None else self.dims[0]
        self.weights = nn.Parameter(torch.zeros(len(self.dims)))
        self.register_buffer("scales", torch.ones(len(self.dims), dtype=torch.float32))
        if scales is not None:
            self.set_scales(scales)

    @property
    def num_layers(self) -> int:
        """Number of layers summed."""
        return len(self.dims)

    @property
    def normalize(self) -> bool:
        """True when layers are layer-normed per frame (the frames tier is needed)."""
        return self.mode == "layer_norm"

    def set_scales(self, scales: Sequence[float] | np.ndarray) -> None:
        """Per-layer divisors of ``"scale"`` mode (zero or non-finite entries become 1: nothing to rescale)."""
        s = np.asarray(scales, dtype=np.float64).reshape(-1)
        if s.shape[0] != self.num_layers:
            raise ValueError(f"{s.shape[0]} scales for {self.num_layers} layers")
        s = np.where(np.isfinite(s) & (s > 1e-12), s, 1.0)
        with torch.no_grad():
            self.scales.copy_(torch.from_numpy(s.astype(np.float32)))

    def normalized(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Layer ``i`` after its normalisation (before any projection)."""
        if self.mode == "layer_norm":
            return F.layer_norm(h, h.shape[-1:])
        if self.mode == "scale":
            return h / self.scales[i].to(h.dtype)
        return h

    def term(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """``f_i(h)``: layer ``i`` normalised then projected (its term in the sum before the softmax weight)."""
        h = self.normalized(i, h)
        return self.proj[i](h) if self.proj is not None else h

    def forward(self, layers: Sequence[torch.Tensor]) -> torch.Tensor:
        """``layers[l]``: [..., D_l] with identical leading shapes -> [..., out_dim]."""
        if len(layers) != self.num_layers:
            raise ValueError(f"WeightedSum built for {self.num_layers} layers, got {len(layers)}")
        feats = [self.term(i, h) for i, h in enumerate(layers)]
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

    def _affine(self, i: int) -> tuple[np.ndarray | None, float]:
        """(projection matrix or None, scalar divisor) of layer ``i``'s term (``"scale"``/``"none"`` modes: affine)."""
        p = self.proj[i].weight.detach().double().cpu().numpy() if self.proj is not None else None
        return p, float(self.scales[i]) if self.mode == "scale" else 1.0

    def spread_pooled(self, means: Sequence[np.ndarray], stds: Sequence[np.ndarray] | None) -> np.ndarray:
        """Per layer ``E||f_l(h) - E f_l(h)||^2`` over frames (each utterance weighted equally) from pooled means/stds.

        Total covariance = covariance of the utterance means + mean within-utterance covariance. Without a
        projection only the trace is needed, so this is exact; through a projection ``P`` the within part
        uses the diagonal of the within-utterance covariance (the pooled tier keeps per-dimension stds only):
        ``tr(P diag(E sigma^2) P^T)``. The between part is exact. Layer norm is per frame: not affine, use
        :meth:`spread_frames`.
        """
        if self.mode == "layer_norm":
            raise ValueError("layer-normed layers need frames for their contribution (spread_frames)")
        out = []
        for i, m in enumerate(means):
            p, s = self._affine(i)
            m = np.asarray(m, dtype=np.float64)
            centred = m - m.mean(axis=0, keepdims=True)
            within = np.square(np.asarray(stds[i], dtype=np.float64)).mean(axis=0) if stds is not None else np.zeros(m.shape[1])
            if p is None:
                total = float(np.square(centred).sum(axis=1).mean() + within.sum())
            else:
                total = float(np.square(centred @ p.T).sum(axis=1).mean() + (np.square(p).sum(axis=0) * within).sum())
            out.append(total / s**2)
        return np.asarray(out)

    @torch.no_grad()
    def spread_frames(self, batches: Iterable[tuple[Sequence[torch.Tensor], torch.Tensor]]) -> np.ndarray:
        """Per layer ``E||f_l(h) - E f_l(h)||^2`` over the valid frames of ``(per-layer [B, T, D_l], lengths)`` batches (exact)."""
        n = 0.0
        total = [torch.zeros(self.out_dim, dtype=torch.float64) for _ in self.dims]
        square = [torch.zeros(self.out_dim, dtype=torch.float64) for _ in self.dims]
        device = self.weights.device
        for frames, lengths in batches:
            valid = torch.arange(frames[0].shape[1])[None, :] < lengths[:, None]
            n += float(valid.sum())
            for i, h in enumerate(frames):
                f = self.term(i, h.to(device)).double().cpu()[valid]
                total[i] += f.sum(dim=0)
                square[i] += (f * f).sum(dim=0)
        if n == 0:
            return np.ones(self.num_layers)
        return np.array([float((square[i] / n - (total[i] / n) ** 2).clamp(min=0).sum()) for i in range(self.num_layers)])

    def contribution(self, spread: Sequence[float] | np.ndarray) -> np.ndarray:
        """Share of the sum each layer contributes: ``softmax(w)_l * sqrt(spread_l)``, normalised to sum 1."""
        raw = self.softmax_weights()
        spread = np.asarray(spread, dtype=np.float64)
        if spread.shape != raw.shape:
            raise ValueError(f"spread has {spread.shape[0]} entries for {raw.shape[0]} layers")
        c = raw * np.sqrt(np.clip(spread, 0.0, None))
        total = c.sum()
        return c / total if total > 0 else np.full_like(raw, 1.0 / raw.size)

    def importance(self, spread: Sequence[float] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(raw ``softmax(w)``, contribution share); without ``spread`` the share is the raw weight."""
        raw = self.softmax_weights()
        return raw, (self.contribution(spread) if spread is not None else raw)


def rms_norms(means: Sequence[np.ndarray], stds: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Per-layer RMS frame norm ``sqrt(E_utt(||mu||^2 + ||sigma||^2))`` from pooled means (and stds: exact).

    Per utterance the mean of ``||x_t||^2`` over frames is ``||mu||^2 + ||sigma||^2`` (population std), so the
    pooled tier gives the frames' RMS norm exactly, each utterance weighted equally.
    """
    out = []
    for i, m in enumerate(means):
        sq = np.square(m.astype(np.float64)).sum(axis=1)
        if stds is not None:
            sq = sq + np.square(stds[i].astype(np.float64)).sum(axis=1)
        out.append(float(np.sqrt(sq.mean())) if sq.size else 1.0)
    return np.asarray(out)


def spread_norms(means: Sequence[np.ndarray], stds: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Per-layer RMS distance of frames from the layer's mean, ``sqrt(E_utt(||mu - mean(mu)||^2 + ||sigma||^2))`` (exact from the pooled tier).

    The spread, not the raw RMS: a layer's constant offset (post-ReLU ECAPA channels, log-mel levels) is absorbed by
    the next linear layer's bias and says nothing about how much the layer varies; dividing by a norm that includes it
    shrinks an offset layer's informative variation next to a zero-mean one. It is :func:`rms_norms` of the means
    centred on their average over utterances (the stds are already about each utterance's own mean).
    """
    centred = [m - m.mean(axis=0, keepdims=True) if len(m) else m for m in (np.asarray(x, dtype=np.float64) for x in means)]
    return rms_norms(centred, stds)


def layer_scales(means: Sequence[np.ndarray], stds: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """``"scale"`` mode divisors: the layer's spread per dimension, ``spread_norms / sqrt(D_l)`` (a scaled layer varies by ``D_l`` in total)."""
    dims = np.array([max(int(np.asarray(m).shape[1]), 1) for m in means], dtype=np.float64)
    return spread_norms(means, stds) / np.sqrt(dims)


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

"""Closed-form per-layer probes from :class:`~layerlab.profile.state.Blocks`: CCA with the one-hot reference and a ridge classifier.

CCA uses the one implementation (:func:`layerlab.cka.measures.canonical_correlations`) on the layer's
block and the reference's centred one-hot block; with K classes present the one-hot has rank K - 1,
so the profile reports the mean (and mean square) of the ``min(rank_x, K - 1)`` correlations that can
be non-zero (CCA with a one-hot is linear discriminant analysis: rho_i^2 = lambda_i / (1 + lambda_i)).

The classifier is least squares on the centred one-hot with a ridge: ``B = (Cxx + lambda I)^{-1} Cxz``,
``lambda = eps * tr(Cxx) / d`` for each ``eps`` of a grid (one eigendecomposition serves the grid), and
an item is assigned ``argmax_c (x - mean)^T B[:, c] + n_c / n`` over the classes seen in training. It
equals a direct least-squares solve on the items (tests/profile/test_solve.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from layerlab.profile.state import Blocks


@dataclass(frozen=True)
class CCAScore:
    """Canonical correlations of a layer with a reference: their mean and mean square over the ``k`` that can be non-zero."""

    mean: float
    r2: float
    k: int
    ridge: float
    note: str = ""


def cca_with_reference(blocks: Blocks, ridge: float = 1e-6) -> CCAScore:
    """CCA of one layer's items with their one-hot labels (classes without items left out)."""
    from layerlab.cka.measures import canonical_from_spectra, spectrum

    present = blocks.counts > 0
    if present.sum() < 2:
        return CCAScore(float("nan"), float("nan"), 0, ridge, "fewer than 2 classes among these items: no correlation is defined")
    # canonical_correlations without the canonical weights (only the correlations are reported)
    res = canonical_from_spectra(spectrum(blocks.cxx), spectrum(blocks.czz[np.ix_(present, present)]), blocks.cxz[:, present], ridge=ridge,
                                 n=blocks.n, vectors=False)
    if res.constant:
        return CCAScore(float("nan"), float("nan"), 0, ridge, res.note)
    k = min(res.rank_a, res.rank_b)
    rho = res.rho[:k]
    return CCAScore(float(rho.mean()), float(np.square(rho).mean()), k, ridge, res.note)


@dataclass
class RidgeClassifier:
    """A least-squares classifier per ridge value: scores ``x @ weights[r] + bias[r]`` (classes unseen in training at -inf)."""

    weights: np.ndarray  # [R, d, K]
    bias: np.ndarray  # [R, K]
    lambdas: np.ndarray  # absolute ridge per grid value
    eps: np.ndarray  # relative ridge grid
    seen: np.ndarray  # [K] bool: classes with training items
    _flat: Any = field(default=None, repr=False)  # weights as one [d, R*K] torch matrix, built on first use

    def scores(self, x: Any) -> np.ndarray:
        """[n, R, K] class scores of items ``x`` [n, d]."""
        import torch

        from layerlab.cka.linalg import single_threaded

        r, d, k = self.weights.shape
        if self._flat is None:
            self._flat = torch.from_numpy(np.ascontiguousarray(self.weights.transpose(1, 0, 2).reshape(d, r * k)))
        xt = torch.from_numpy(np.asarray(x, dtype=np.float64))
        with single_threaded(xt.device):  # one GEMM for the whole grid
            out = (xt @ self._flat).numpy()
        return out.reshape(len(out), r, k) + self.bias[None]

    def predict(self, x: Any) -> np.ndarray:
        """[n, R] predicted class of each item under each ridge value."""
        return self.scores(x).argmax(-1)

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights, "bias": self.bias, "lambdas": self.lambdas, "eps": self.eps, "seen": self.seen}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "RidgeClassifier":
        return cls(*(np.asarray(state[k]) for k in ("weights", "bias", "lambdas", "eps", "seen")))


def ridge_classifier(blocks: Blocks, eps: Sequence[float]) -> RidgeClassifier:
    """Fit the least-squares classifier of one layer on the training items' blocks for each relative ridge in ``eps``."""
    eps_arr = np.asarray(list(eps), dtype=np.float64)
    if not len(eps_arr) or (eps_arr <= 0).any():
        raise ValueError(f"ridge grid: needs positive values, got {list(eps)}")
    import torch

    from layerlab.cka import linalg

    d = blocks.cxx.shape[0]
    cxx = torch.from_numpy(np.ascontiguousarray(blocks.cxx, dtype=np.float64))
    with linalg.single_threaded(cxx.device):  # one eigendecomposition serves the whole grid
        values, vectors = linalg.eigh(cxx)
        values = values.clamp_min(0.0)
        trace = float(values.sum())
        scale = trace / d if trace > 0 else 1.0
        lambdas = eps_arr * scale
        proj = vectors.T @ torch.from_numpy(np.asarray(blocks.cxz, dtype=np.float64))  # [d, K]
        weights = torch.stack([vectors @ (proj / (values + float(lam))[:, None]) for lam in lambdas]).numpy()  # [R, d, K]
    prior = blocks.counts / max(int(blocks.n), 1)
    bias = prior[None, :] - np.einsum("d,rdk->rk", blocks.mean, weights)
    seen = blocks.counts > 0
    bias[:, ~seen] = -np.inf
    return RidgeClassifier(weights, bias, lambdas, eps_arr, seen)

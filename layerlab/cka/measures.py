"""Similarity measures of two layers from their centred second-moment blocks (float64 NumPy, one pair at a time).

With X (n x p) and Y (n x q) the centred frames (or utterance means) of two layers, every measure
here is a function of ``cxx = X^T X``, ``cyy = Y^T Y`` and ``cxy = X^T Y`` (sums, not divided by n),
which the FeatureCKA state holds for every layer pair (``C = M - S S^T / n``). Definitions follow
/work/shared/notes/similarity-math.md: CCA as in Raghu et al. 2017 / Morcos et al. 2018 (ridge
``lambda = eps * tr(C) / p`` on each side), orthogonal Procrustes as in Ding et al. 2021. The
all-pairs engine (cached eigendecompositions, jackknife) is :mod:`layerlab.cka.moment_measures`;
the measure registry (names, ranges) is :mod:`layerlab.cka.measure_registry`. The arithmetic runs in
float64 torch on the blocks' device (a GPU when the state lives there; :mod:`layerlab.cka.linalg`);
inputs may be NumPy arrays or tensors, results are NumPy arrays and floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from layerlab.cka import linalg

#: eigenvalues of a block at or below this fraction of its largest are treated as exact zeros (rank deficiency,
#: d > n): float64 sums of many frames carry relative rounding errors far below it, real layers' spectra stay above it
RANK_RTOL = 1e-10


@dataclass(frozen=True)
class CanonicalResult:
    """Canonical correlations of two layers and what produced them.

    ``rho``: the ``min(p, q)`` canonical correlations, descending, in [0, 1] (zeros beyond the effective ranks);
    ``weights_a`` (p x k) / ``weights_b`` (q x k): canonical weights ``w_i`` (the variates ``X w_i`` have unit
    regularised variance, ``w_i^T (cxx + lambda_a I) w_i = 1``; zero columns beyond the ranks);
    ``rank_a`` / ``rank_b``: effective ranks (eigenvalues above ``RANK_RTOL`` of the largest);
    ``ridge`` (eps) and the absolute ``lambda_a`` / ``lambda_b`` added to each side; ``note``: empty, or one line on a
    degenerate case (constant layer, rank deficiency, more dimensions than items).
    """

    rho: np.ndarray
    weights_a: np.ndarray
    weights_b: np.ndarray
    rank_a: int
    rank_b: int
    ridge: float
    lambda_a: float
    lambda_b: float
    note: str = ""
    constant: bool = field(default=False)  # a side has zero variance: no correlation is defined (rho reported as 0)


@dataclass(frozen=True)
class Spectrum:
    """Eigendecomposition of one layer's block ``c = V diag(e) V^T`` (ascending, tensors), with its trace and effective rank."""

    values: torch.Tensor
    vectors: torch.Tensor
    trace: float
    rank: int

    @property
    def dim(self) -> int:
        return int(self.values.shape[0])

    def kept(self) -> torch.Tensor:
        """Mask of the eigen-directions above the rank threshold (the others are exact zeros up to rounding)."""
        top = float(self.values[-1]) if self.dim else 0.0
        return self.values > RANK_RTOL * top if top > 0 else torch.zeros(self.dim, dtype=torch.bool, device=self.values.device)


def spectrum(c: Any, device: torch.device | None = None) -> Spectrum:
    """Eigendecomposition of a symmetric PSD block (symmetrised first; negative rounding noise clipped to 0)."""
    c = linalg.as_f64(c, device)
    if c.dim() != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"second-moment block: expected a square matrix, got shape {tuple(c.shape)}")
    sym = 0.5 * (c + c.T)
    values, vectors = linalg.eigh(sym)
    values = values.clamp(min=0.0)
    trace = float(torch.trace(sym))
    top = float(values[-1]) if values.numel() else 0.0
    rank = int((values > RANK_RTOL * top).sum()) if top > 0 and trace > 0 else 0
    return Spectrum(values, vectors, trace, rank)


def _check_blocks(cxx: Any, cyy: Any, cxy: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    device = next((c.device for c in (cxx, cyy, cxy) if isinstance(c, torch.Tensor)), None)
    cxx, cyy, cxy = (linalg.as_f64(c, device) for c in (cxx, cyy, cxy))
    p, q = cxx.shape[0], cyy.shape[0]
    if tuple(cxx.shape) != (p, p) or tuple(cyy.shape) != (q, q) or tuple(cxy.shape) != (p, q):
        raise ValueError(f"second-moment blocks: need cxx (p x p), cyy (q x q), cxy (p x q); got {tuple(cxx.shape)}, {tuple(cyy.shape)}, {tuple(cxy.shape)}")
    return cxx, cyy, cxy


def canonical_correlations(cxx: np.ndarray, cyy: np.ndarray, cxy: np.ndarray, *, ridge: float = 1e-6,
                           n: int | None = None) -> CanonicalResult:
    """Canonical correlations of two layers from centred second-moment blocks (sums over items, not divided by n).

    ``rho`` are the singular values of ``(cxx + lambda_a I)^{-1/2} cxy (cyy + lambda_b I)^{-1/2}`` with
    ``lambda = ridge * tr(c) / dim`` per side (``ridge = 0``: plain CCA; directions of zero variance are
    left out either way, they carry no correlation). ``n`` (optional, the number of items) only sharpens the
    note when the effective ranks exceed what n items can hold (d > n: some correlations are 1 by construction).
    Blocks may be NumPy arrays or torch tensors (the work runs where they are); the result holds NumPy arrays.
    """
    if not ridge >= 0:
        raise ValueError(f"ridge: must be >= 0, got {ridge}")
    cxx, cyy, cxy = _check_blocks(cxx, cyy, cxy)
    return canonical_from_spectra(spectrum(cxx), spectrum(cyy), cxy, ridge=ridge, n=n)


@dataclass
class _Canonical:
    """Tensor form of a CCA result (what the all-pairs engine uses without leaving the device)."""

    rho: torch.Tensor
    weights_a: torch.Tensor | None
    weights_b: torch.Tensor | None
    note: str
    constant: bool


def whitened_cross(sa: Spectrum, sb: Spectrum, cxy: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(T, V_a S_a^{-1/2}, V_b S_b^{-1/2})``: the whitened cross block on the kept subspaces, whose singular values are
    the canonical correlations (``||T||_F^2 = sum rho_i^2``: mean squared CCA needs no decomposition)."""
    lam_a = ridge * sa.trace / sa.dim if sa.trace > 0 else 0.0
    lam_b = ridge * sb.trace / sb.dim if sb.trace > 0 else 0.0
    ka, kb = sa.kept(), sb.kept()
    va = sa.vectors[:, ka] / torch.sqrt(sa.values[ka] + lam_a)
    vb = sb.vectors[:, kb] / torch.sqrt(sb.values[kb] + lam_b)
    return va.T @ cxy.to(va.device, torch.float64) @ vb, va, vb


def cca_note(sa: Spectrum, sb: Spectrum, n: int | None) -> str:
    """The one-line note on a pair's CCA: rank deficiency, more dimensions than items ("" when neither)."""
    p, q = sa.dim, sb.dim
    k = min(p, q)
    notes = []
    if sa.rank < p or sb.rank < q:
        notes.append(f"rank deficient: effective rank {sa.rank} of {p} (side a), {sb.rank} of {q} (side b); "
                     f"{k - min(sa.rank, sb.rank)} of the {k} correlations are 0")
    if n is not None and sa.rank + sb.rank > n - 1:
        notes.append(f"more dimensions than items ({sa.rank} + {sb.rank} > n - 1 = {n - 1}): "
                     "unregularised correlations would be 1 by construction")
    return "; ".join(notes)


def _canonical(sa: Spectrum, sb: Spectrum, cxy: torch.Tensor, ridge: float, n: int | None, vectors: bool) -> tuple[_Canonical, float, float]:
    p, q = sa.dim, sb.dim
    k = min(p, q)
    dev = sa.values.device
    lam_a = ridge * sa.trace / p if sa.trace > 0 else 0.0
    lam_b = ridge * sb.trace / q if sb.trace > 0 else 0.0
    rho = torch.zeros(k, dtype=torch.float64, device=dev)
    wa = torch.zeros(p, k, dtype=torch.float64, device=dev) if vectors else None
    wb = torch.zeros(q, k, dtype=torch.float64, device=dev) if vectors else None
    constant = [side for side, s in (("a", sa), ("b", sb)) if s.rank == 0]
    if constant:
        note = f"constant layer (zero variance) on side {' and '.join(constant)}: no canonical correlation is defined (reported as 0)"
        return _Canonical(rho, wa, wb, note, True), lam_a, lam_b
    t, va, vb = whitened_cross(sa, sb, cxy, ridge)  # whitening on the kept subspaces: V S^{-1/2}
    if vectors:
        u, s, vh = linalg.svd(t)
        r = s.shape[0]
        wa[:, :r] = va @ u
        wb[:, :r] = vb @ vh.T
    else:
        s = linalg.svdvals(t)
        r = s.shape[0]
    rho[:r] = s.clamp(0.0, 1.0)
    return _Canonical(rho, wa, wb, cca_note(sa, sb, n), False), lam_a, lam_b


def canonical_from_spectra(sa: Spectrum, sb: Spectrum, cxy: Any, *, ridge: float = 1e-6, n: int | None = None,
                           vectors: bool = True) -> CanonicalResult:
    """:func:`canonical_correlations` from precomputed :func:`spectrum` of each side (``vectors=False``: no weights)."""
    res, lam_a, lam_b = _canonical(sa, sb, linalg.as_f64(cxy, sa.values.device), ridge, n, vectors)
    k = res.rho.shape[0]
    wa = linalg.numpy(res.weights_a) if res.weights_a is not None else np.zeros((sa.dim, k))
    wb = linalg.numpy(res.weights_b) if res.weights_b is not None else np.zeros((sb.dim, k))
    return CanonicalResult(linalg.numpy(res.rho), wa, wb, sa.rank, sb.rank, float(ridge), lam_a, lam_b, res.note, constant=res.constant)


# ---------------------------------------------------------------------------------------------- pair measures
def linear_cka(cxx: Any, cyy: Any, cxy: Any) -> float:
    """Biased linear CKA ``||cxy||_F^2 / (||cxx||_F ||cyy||_F)`` (NaN for a constant layer)."""
    cxx, cyy, cxy = _check_blocks(cxx, cyy, cxy)
    den = float(torch.linalg.norm(cxx) * torch.linalg.norm(cyy))
    return float(cxy.square().sum()) / den if den > 0 else float("nan")


def cca_r2(result: CanonicalResult) -> float:
    """Mean squared canonical correlation over the ``min(p, q)`` correlations (NaN for a constant layer)."""
    return float("nan") if result.constant else float(np.mean(np.square(result.rho)))


def cca_mean(result: CanonicalResult) -> float:
    """Mean canonical correlation over the ``min(p, q)`` correlations (NaN for a constant layer)."""
    return float("nan") if result.constant else float(np.mean(result.rho))


def pwcca(cxx: Any, result: CanonicalResult) -> float:
    """Projection-weighted CCA (Morcos et al. 2018) with weights from side a.

    ``alpha_i = sum_j |<X w_i, x_j>| = sum_j |(cxx w_i)_j|`` (x_j: neuron j's centred activations);
    ``PWCCA = sum_i alpha_i rho_i / sum_i alpha_i``. Not invariant to rotations of the neuron basis (the L1 sum
    over neurons), only to permutations, sign flips and isotropic scaling of the neurons.
    """
    if result.constant:
        return float("nan")
    return pwcca_from(cxx, result.weights_a, result.rho)


def pwcca_from(c: Any, weights: Any, rho: Any) -> float:
    """PWCCA with the weights of one side: ``c`` that side's block, ``weights`` its canonical weights (columns)."""
    c = linalg.as_f64(c)
    alpha = (c @ linalg.as_f64(weights, c.device)).abs().sum(dim=0)
    total = float(alpha.sum())
    return float(alpha @ linalg.as_f64(rho, c.device)) / total if total > 0 else float("nan")


def top_directions(s: Spectrum, fraction: float) -> torch.Tensor:
    """Indices (into ``s.values``) of the fewest top eigen-directions whose variance reaches ``fraction`` of the trace."""
    if not 0 < fraction <= 1:
        raise ValueError(f"svcca fraction: must be in (0, 1], got {fraction}")
    order = torch.argsort(s.values, descending=True)
    cum = torch.cumsum(s.values[order], dim=0)
    target = torch.tensor(fraction * s.trace * (1 - 1e-12), dtype=torch.float64, device=cum.device)
    count = int(torch.searchsorted(cum, target, right=False)) + 1
    return order[: min(max(count, 1), s.rank or 1)]


def svcca(cxx: Any, cyy: Any, cxy: Any, *, fraction: float = 0.99, ridge: float = 1e-6) -> tuple[float, int, int]:
    """SVCCA (Raghu et al. 2017): mean CCA after keeping each layer's top principal directions explaining ``fraction``.

    The projection of a covariance is a covariance: ``cxx -> diag(l_r)``, ``cxy -> V_r^T cxy U_s``. Returns
    (value, kept directions of a, kept directions of b); NaN for a constant layer.
    """
    cxx, cyy, cxy = _check_blocks(cxx, cyy, cxy)
    return svcca_from_spectra(spectrum(cxx), spectrum(cyy), cxy, fraction=fraction, ridge=ridge)


def svcca_from_spectra(sa: Spectrum, sb: Spectrum, cxy: Any, *, fraction: float = 0.99, ridge: float = 1e-6) -> tuple[float, int, int]:
    """:func:`svcca` from precomputed spectra."""
    if sa.rank == 0 or sb.rank == 0:
        return float("nan"), 0, 0
    ia, ib = top_directions(sa, fraction), top_directions(sb, fraction)
    ia, ib = ia[torch.argsort(sa.values[ia])], ib[torch.argsort(sb.values[ib])]  # ascending, like an eigh result
    dev = sa.values.device
    ra = Spectrum(sa.values[ia], torch.eye(len(ia), dtype=torch.float64, device=dev), float(sa.values[ia].sum()), len(ia))
    rb = Spectrum(sb.values[ib], torch.eye(len(ib), dtype=torch.float64, device=dev), float(sb.values[ib].sum()), len(ib))
    red = sa.vectors[:, ia].T @ linalg.as_f64(cxy, dev) @ sb.vectors[:, ib]
    res = _canonical(ra, rb, red, ridge, None, False)[0]
    return float(res.rho.mean()), len(ia), len(ib)


def procrustes(cxx: Any, cyy: Any, cxy: Any) -> float:
    """Squared orthogonal Procrustes distance on centred, Frobenius-normalised data (Ding et al. 2021), in [0, 2].

    ``2 - 2 ||cxy||_* / sqrt(tr cxx * tr cyy)`` (nuclear norm); NaN for a constant layer.
    """
    cxx, cyy, cxy = _check_blocks(cxx, cyy, cxy)
    return procrustes_from_traces(float(torch.trace(cxx)), float(torch.trace(cyy)), cxy)


def procrustes_from_traces(tr_x: float, tr_y: float, cxy: Any) -> float:
    """:func:`procrustes` from the two traces and the cross block."""
    if not (tr_x > 0 and tr_y > 0):
        return float("nan")
    nuclear = float(linalg.svdvals(linalg.as_f64(cxy)).sum())
    return float(min(max(2.0 - 2.0 * nuclear / np.sqrt(tr_x * tr_y), 0.0), 2.0))


def ridge_r2_in_sample(cxx: Any, cyy: Any, cxy: Any, lam: float) -> float:
    """In-sample R^2 of predicting Y from X by ridge regression with penalty ``lam`` (absolute).

    ``B = (cxx + lam I)^{-1} cxy``; ``SSE = tr(cyy - 2 B^T cxy + B^T cxx B)``; ``R^2 = 1 - SSE / tr cyy``.
    """
    cxx, cyy, cxy = _check_blocks(cxx, cyy, cxy)
    tr_y = float(torch.trace(cyy))
    if not tr_y > 0:
        return float("nan")
    with linalg.single_threaded(cxx.device):
        eye = torch.eye(cxx.shape[0], dtype=torch.float64, device=cxx.device)
        b = torch.linalg.solve(cxx + lam * eye, cxy) if lam > 0 else torch.linalg.lstsq(cxx, cxy).solution
    sse = tr_y - 2.0 * float((b * cxy).sum()) + float((b * (cxx @ b)).sum())
    return 1.0 - sse / tr_y

"""Similarity measures of two layers from their centred second-moment blocks (float64 NumPy, one pair at a time).

With X (n x p) and Y (n x q) the centred frames (or utterance means) of two layers, every measure
here is a function of ``cxx = X^T X``, ``cyy = Y^T Y`` and ``cxy = X^T Y`` (sums, not divided by n),
which the FeatureCKA state holds for every layer pair (``C = M - S S^T / n``). Definitions follow
/work/shared/notes/similarity-math.md: CCA as in Raghu et al. 2017 / Morcos et al. 2018 (ridge
``lambda = eps * tr(C) / p`` on each side), orthogonal Procrustes as in Ding et al. 2021. The
all-pairs engine (cached eigendecompositions, jackknife) is :mod:`layerlab.cka.moment_measures`;
the measure registry (names, ranges) is :mod:`layerlab.cka.measure_registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
    """Eigendecomposition of one layer's block ``c = V diag(e) V^T`` (ascending), with its trace and effective rank."""

    values: np.ndarray
    vectors: np.ndarray
    trace: float
    rank: int

    @property
    def dim(self) -> int:
        return int(self.values.shape[0])

    def kept(self) -> np.ndarray:
        """Mask of the eigen-directions above the rank threshold (the others are exact zeros up to rounding)."""
        top = float(self.values[-1]) if self.dim else 0.0
        return self.values > RANK_RTOL * top if top > 0 else np.zeros(self.dim, dtype=bool)


def spectrum(c: np.ndarray) -> Spectrum:
    """Eigendecomposition of a symmetric PSD block (symmetrised first; negative rounding noise clipped to 0)."""
    c = np.asarray(c, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"second-moment block: expected a square matrix, got shape {c.shape}")
    sym = 0.5 * (c + c.T)
    values, vectors = np.linalg.eigh(sym)
    values = np.maximum(values, 0.0)
    trace = float(np.trace(sym))
    top = float(values[-1]) if values.size else 0.0
    rank = int(np.count_nonzero(values > RANK_RTOL * top)) if top > 0 and trace > 0 else 0
    return Spectrum(values, vectors, trace, rank)


def _check_blocks(cxx: np.ndarray, cyy: np.ndarray, cxy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cxx, cyy, cxy = (np.asarray(c, dtype=np.float64) for c in (cxx, cyy, cxy))
    p, q = cxx.shape[0], cyy.shape[0]
    if cxx.shape != (p, p) or cyy.shape != (q, q) or cxy.shape != (p, q):
        raise ValueError(f"second-moment blocks: need cxx (p x p), cyy (q x q), cxy (p x q); got {cxx.shape}, {cyy.shape}, {cxy.shape}")
    return cxx, cyy, cxy


def canonical_correlations(cxx: np.ndarray, cyy: np.ndarray, cxy: np.ndarray, *, ridge: float = 1e-6,
                           n: int | None = None) -> CanonicalResult:
    """Canonical correlations of two layers from centred second-moment blocks (sums over items, not divided by n).

    ``rho`` are the singular values of ``(cxx + lambda_a I)^{-1/2} cxy (cyy + lambda_b I)^{-1/2}`` with
    ``lambda = ridge * tr(c) / dim`` per side (``ridge = 0``: plain CCA; directions of zero variance are
    left out either way, they carry no correlation). ``n`` (optional, the number of items) only sharpens the
    note when the effective ranks exceed what n items can hold (d > n: some correlations are 1 by construction).
    """
    if not ridge >= 0:
        raise ValueError(f"ridge: must be >= 0, got {ridge}")
    cxx, cyy, cxy = _check_blocks(cxx, cyy, cxy)
    return canonical_from_spectra(spectrum(cxx), spectrum(cyy), cxy, ridge=ridge, n=n)


def canonical_from_spectra(sa: Spectrum, sb: Spectrum, cxy: np.ndarray, *, ridge: float = 1e-6, n: int | None = None,
                           vectors: bool = True) -> CanonicalResult:
    """:func:`canonical_correlations` from precomputed :func:`spectrum` of each side (the all-pairs engine reuses them)."""
    p, q = sa.dim, sb.dim
    k = min(p, q)
    lam_a = ridge * sa.trace / p if sa.trace > 0 else 0.0
    lam_b = ridge * sb.trace / q if sb.trace > 0 else 0.0
    rho = np.zeros(k)
    wa, wb = np.zeros((p, k)), np.zeros((q, k))
    constant = [side for side, s in (("a", sa), ("b", sb)) if s.rank == 0]
    if constant:
        note = f"constant layer (zero variance) on side {' and '.join(constant)}: no canonical correlation is defined (reported as 0)"
        return CanonicalResult(rho, wa, wb, sa.rank, sb.rank, float(ridge), lam_a, lam_b, note, constant=True)
    ka, kb = sa.kept(), sb.kept()
    va = sa.vectors[:, ka] / np.sqrt(sa.values[ka] + lam_a)  # whitening on the kept subspace: V S^{-1/2}
    vb = sb.vectors[:, kb] / np.sqrt(sb.values[kb] + lam_b)
    t = va.T @ np.asarray(cxy, dtype=np.float64) @ vb
    if vectors:
        u, s, vt = np.linalg.svd(t, full_matrices=False)
        r = s.shape[0]
        wa[:, :r] = va @ u
        wb[:, :r] = vb @ vt.T
    else:
        s = np.linalg.svd(t, compute_uv=False)
        r = s.shape[0]
    rho[:r] = np.clip(s, 0.0, 1.0)
    notes = []
    if sa.rank < p or sb.rank < q:
        notes.append(f"rank deficient: effective rank {sa.rank} of {p} (side a), {sb.rank} of {q} (side b); "
                     f"{k - min(sa.rank, sb.rank)} of the {k} correlations are 0")
    if n is not None and sa.rank + sb.rank > n - 1:
        notes.append(f"more dimensions than items ({sa.rank} + {sb.rank} > n - 1 = {n - 1}): "
                     "unregularised correlations would be 1 by construction")
    return CanonicalResult(rho, wa, wb, sa.rank, sb.rank, float(ridge), lam_a, lam_b, "; ".join(notes))


# ---------------------------------------------------------------------------------------------- pair measures
def linear_cka(cxx: np.ndarray, cyy: np.ndarray, cxy: np.ndarray) -> float:
    """Biased linear CKA ``||cxy||_F^2 / (||cxx||_F ||cyy||_F)`` (NaN for a constant layer)."""
    cxx, cyy, cxy = _check_blocks(cxx, cyy, cxy)
    den = float(np.linalg.norm(cxx) * np.linalg.norm(cyy))
    return float(np.square(cxy).sum() / den) if den > 0 else float("nan")


def cca_r2(result: CanonicalResult) -> float:
    """Mean squared canonical correlation over the ``min(p, q)`` correlations (NaN for a constant layer)."""
    return float("nan") if result.constant else float(np.mean(np.square(result.rho)))


def cca_mean(result: CanonicalResult) -> float:
    """Mean canonical correlation over the ``min(p, q)`` correlations (NaN for a constant layer)."""
    return float("nan") if result.constant else float(np.mean(result.rho))


def pwcca(cxx: np.ndarray, result: CanonicalResult) -> float:
    """Projection-weighted CCA (Morcos et al. 2018) with weights from side a.

    ``alpha_i = sum_j |<X w_i, x_j>| = sum_j |(cxx w_i)_j|`` (x_j: neuron j's centred activations);
    ``PWCCA = sum_i alpha_i rho_i / sum_i alpha_i``.
    """
    if result.constant:
        return float("nan")
    alpha = np.abs(np.asarray(cxx, dtype=np.float64) @ result.weights_a).sum(axis=0)
    total = float(alpha.sum())
    return float(alpha @ result.rho / total) if total > 0 else float("nan")


def top_directions(s: Spectrum, fraction: float) -> np.ndarray:
    """Indices (into ``s.values``) of the fewest top eigen-directions whose variance reaches ``fraction`` of the trace."""
    if not 0 < fraction <= 1:
        raise ValueError(f"svcca fraction: must be in (0, 1], got {fraction}")
    order = np.argsort(s.values)[::-1]
    cum = np.cumsum(s.values[order])
    count = int(np.searchsorted(cum, fraction * s.trace * (1 - 1e-12), side="left")) + 1
    return order[: min(max(count, 1), s.rank or 1)]


def svcca(cxx: np.ndarray, cyy: np.ndarray, cxy: np.ndarray, *, fraction: float = 0.99, ridge: float = 1e-6) -> tuple[float, int, int]:
    """SVCCA (Raghu et al. 2017): mean CCA after keeping each layer's top principal directions explaining ``fraction``.

    The projection of a covariance is a covariance: ``cxx -> diag(l_r)``, ``cxy -> V_r^T cxy U_s``. Returns
    (value, kept directions of a, kept directions of b); NaN for a constant layer.
    """
    cxx, cyy, cxy = _check_blocks(cxx, cyy, cxy)
    return svcca_from_spectra(spectrum(cxx), spectrum(cyy), cxy, fraction=fraction, ridge=ridge)


def svcca_from_spectra(sa: Spectrum, sb: Spectrum, cxy: np.ndarray, *, fraction: float = 0.99, ridge: float = 1e-6) -> tuple[float, int, int]:
    """:func:`svcca` from precomputed spectra."""
    if sa.rank == 0 or sb.rank == 0:
        return float("nan"), 0, 0
    ia, ib = top_directions(sa, fraction), top_directions(sb, fraction)
    ia, ib = ia[np.argsort(sa.values[ia])], ib[np.argsort(sb.values[ib])]  # ascending, like an eigh result
    ra = Spectrum(sa.values[ia], np.eye(len(ia)), float(sa.values[ia].sum()), len(ia))
    rb = Spectrum(sb.values[ib], np.eye(len(ib)), float(sb.values[ib].sum()), len(ib))
    red = sa.vectors[:, ia].T @ np.asarray(cxy, dtype=np.float64) @ sb.vectors[:, ib]
    res = canonical_from_spectra(ra, rb, red, ridge=ridge, vectors=False)
    return cca_mean(res), len(ia), len(ib)


def procrustes(cxx: np.ndarray, cyy: np.ndarray, cxy: np.ndarray) -> float:
    """Squared orthogonal Procrustes distance on centred, Frobenius-normalised data (Ding et al. 2021), in [0, 2].

    ``2 - 2 ||cxy||_* / sqrt(tr cxx * tr cyy)`` (nuclear norm); NaN for a constant layer.
    """
    cxx, cyy, cxy = _check_blocks(cxx, cyy, cxy)
    return procrustes_from_traces(float(np.trace(cxx)), float(np.trace(cyy)), cxy)


def procrustes_from_traces(tr_x: float, tr_y: float, cxy: np.ndarray) -> float:
    """:func:`procrustes` from the two traces and the cross block."""
    if not (tr_x > 0 and tr_y > 0):
        return float("nan")
    nuclear = float(np.linalg.svd(np.asarray(cxy, dtype=np.float64), compute_uv=False).sum())
    return float(min(max(2.0 - 2.0 * nuclear / np.sqrt(tr_x * tr_y), 0.0), 2.0))


def ridge_r2_in_sample(cxx: np.ndarray, cyy: np.ndarray, cxy: np.ndarray, lam: float) -> float:
    """In-sample R^2 of predicting Y from X by ridge regression with penalty ``lam`` (absolute).

    ``B = (cxx + lam I)^{-1} cxy``; ``SSE = tr(cyy - 2 B^T cxy + B^T cxx B)``; ``R^2 = 1 - SSE / tr cyy``.
    """
    cxx, cyy, cxy = _check_blocks(cxx, cyy, cxy)
    tr_y = float(np.trace(cyy))
    if not tr_y > 0:
        return float("nan")
    b = np.linalg.solve(cxx + lam * np.eye(cxx.shape[0]), cxy) if lam > 0 else np.linalg.lstsq(cxx, cxy, rcond=None)[0]
    sse = tr_y - 2.0 * float(np.sum(b * cxy)) + float(np.sum(b * (cxx @ b)))
    return 1.0 - sse / tr_y

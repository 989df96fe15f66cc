"""Independent float64 NumPy references of the similarity measures, computed from the raw (n x d) matrices.

Written from the papers' definitions, not from the second-moment formulas the engine uses:
CCA by QR decompositions of the centred data (Bjorck & Golub 1973: the canonical correlations are
the singular values of Qx^T Qy), ridge CCA as plain CCA of data augmented with sqrt(lambda) I rows;
SVCCA by PCA of the data (Raghu et al. 2017); PWCCA from the canonical variates' projections on
the neurons (Morcos et al. 2018); Procrustes by solving the orthogonal Procrustes problem and
measuring the residual (Ding et al. 2021); ridge predictivity by an explicit least-squares fit.
"""

from __future__ import annotations

import numpy as np


def centre(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x - x.mean(axis=0)


def _orthonormal_basis(x: np.ndarray, rtol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """(Q, R) of a thin QR restricted to the column space (pivoted via SVD when rank deficient)."""
    q, r = np.linalg.qr(x)
    diag = np.abs(np.diag(r))
    if diag.size and diag.min() > rtol * diag.max():
        return q, r
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    keep = s > rtol * s.max()
    return u[:, keep], (s[keep, None] * vt[keep])


def cca_qr(x: np.ndarray, y: np.ndarray, ridge: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(rho, weights_a) of centred X, Y; ``ridge``: lambda = ridge * tr(X^T X) / p per side, by data augmentation."""
    x, y = centre(x), centre(y)
    p, q = x.shape[1], y.shape[1]
    if ridge > 0:
        lx = ridge * np.square(x).sum() / p
        ly = ridge * np.square(y).sum() / q
        x = np.vstack([x, np.sqrt(lx) * np.eye(p), np.zeros((q, p))])
        y = np.vstack([y, np.zeros((p, q)), np.sqrt(ly) * np.eye(q)])
    qx, rx = _orthonormal_basis(x)
    qy, _ = _orthonormal_basis(y)
    u, s, _ = np.linalg.svd(qx.T @ qy, full_matrices=False)
    k = min(p, q)
    rho = np.zeros(k)
    rho[: len(s)] = s[:k]
    weights = np.linalg.lstsq(rx, u, rcond=None)[0]  # X w = Qx u
    return rho, weights[:, :k]


def cca_r2(x: np.ndarray, y: np.ndarray, ridge: float = 0.0) -> float:
    return float(np.mean(cca_qr(x, y, ridge)[0] ** 2))


def cca_mean(x: np.ndarray, y: np.ndarray, ridge: float = 0.0) -> float:
    return float(np.mean(cca_qr(x, y, ridge)[0]))


def pwcca(x: np.ndarray, y: np.ndarray, ridge: float = 0.0) -> float:
    """Morcos et al.: alpha_i = sum_j |<h_i, x_j>| with h_i = X w_i the canonical variates of X, x_j the neurons."""
    rho, w = cca_qr(x, y, ridge)
    xc = centre(x)
    h = xc @ w  # n x k canonical variates
    alpha = np.abs(h.T @ xc).sum(axis=1)
    return float(alpha @ rho / alpha.sum())


def svcca(x: np.ndarray, y: np.ndarray, fraction: float = 0.99, ridge: float = 0.0) -> float:
    """PCA of each layer keeping the top directions explaining ``fraction`` of the variance, then mean CCA."""
    def reduce(z: np.ndarray) -> np.ndarray:
        z = centre(z)
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        var = s**2
        r = int(np.searchsorted(np.cumsum(var), fraction * var.sum() * (1 - 1e-12))) + 1
        return z @ vt[:r].T

    return cca_mean(reduce(x), reduce(y), ridge)


def procrustes(x: np.ndarray, y: np.ndarray) -> float:
    """min_R ||X R - Y||_F^2 over orthogonal R, X and Y centred and scaled to unit Frobenius norm (zero-padded to one width)."""
    x, y = centre(x), centre(y)
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    d = max(x.shape[1], y.shape[1])
    x = np.hstack([x, np.zeros((x.shape[0], d - x.shape[1]))])
    y = np.hstack([y, np.zeros((y.shape[0], d - y.shape[1]))])
    u, _, vt = np.linalg.svd(x.T @ y)
    r = u @ vt
    return float(np.square(x @ r - y).sum())


def ridge_r2(x: np.ndarray, y: np.ndarray, lam: float) -> float:
    """In-sample R^2 of the ridge regression of centred Y on centred X (penalty ``lam``), from the fitted residuals."""
    x, y = centre(x), centre(y)
    b = np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)
    return float(1.0 - np.square(y - x @ b).sum() / np.square(y).sum())


def ridge_r2_held_out(x: np.ndarray, y: np.ndarray, folds: np.ndarray, lam_rel: float) -> float:
    """Held-out R^2: for each fold, fit on the others (their means, lambda = lam_rel * tr(Xtrain^T Xtrain) / p), predict it."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    sse = sst = 0.0
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        mx, my = x[tr].mean(axis=0), y[tr].mean(axis=0)
        xt, yt = x[tr] - mx, y[tr] - my
        lam = lam_rel * np.square(xt).sum() / x.shape[1]
        b = np.linalg.solve(xt.T @ xt + lam * np.eye(x.shape[1]), xt.T @ yt)
        sse += np.square((y[te] - my) - (x[te] - mx) @ b).sum()
        sst += np.square(y[te] - my).sum()
    return float(1.0 - sse / sst)

"""Gram-space reference estimators (float64 numpy), written for clarity, used to check the engine.

These follow the definitions of Kornblith et al. 2019 (HSIC_0 on centred Gram matrices, RBF
kernel with bandwidth = fraction of the median distance) and Song et al. 2012 (unbiased HSIC_1).
They cost O(n^2) memory and are meant for tests and small samples only.
"""

from __future__ import annotations

import numpy as np


def gram_linear(x: np.ndarray) -> np.ndarray:
    """Linear-kernel Gram matrix ``X X^T``."""
    x = np.asarray(x, dtype=np.float64)
    return x @ x.T


def gram_rbf(x: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    """RBF Gram matrix with ``sigma = threshold * median pairwise distance`` (Kornblith et al.)."""
    x = np.asarray(x, dtype=np.float64)
    dot = x @ x.T
    sq_norms = np.diag(dot)
    sq_dist = sq_norms[:, None] + sq_norms[None, :] - 2.0 * dot
    sq_median = np.median(sq_dist)
    return np.exp(-sq_dist / (2.0 * threshold**2 * sq_median))


def center_gram(k: np.ndarray) -> np.ndarray:
    """Double-centred Gram matrix ``H K H``."""
    k = np.asarray(k, dtype=np.float64)
    return k - k.mean(axis=0, keepdims=True) - k.mean(axis=1, keepdims=True) + k.mean()


def u_center_gram(k: np.ndarray) -> np.ndarray:
    """U-centred Gram matrix (Szekely & Rizzo 2014): zero diagonal, ``<U(K), U(L)>/(n(n-3)) = HSIC_1``."""
    k = np.array(k, dtype=np.float64)
    n = k.shape[0]
    if n < 4:
        raise ValueError(f"u_center_gram: needs n >= 4, got {n}")
    np.fill_diagonal(k, 0.0)
    rows = k.sum(axis=1)
    cols = k.sum(axis=0)
    total = k.sum()
    u = k - rows[:, None] / (n - 2) - cols[None, :] / (n - 2) + total / ((n - 1) * (n - 2))
    np.fill_diagonal(u, 0.0)
    return u


def hsic0(k: np.ndarray, l: np.ndarray) -> float:
    """Biased HSIC ``tr(KHLH)/(n-1)^2``."""
    n = k.shape[0]
    return float((center_gram(k) * center_gram(l)).sum() / (n - 1) ** 2)


def hsic1(k: np.ndarray, l: np.ndarray) -> float:
    """Unbiased HSIC of Song et al. 2012 (eq. 5), computed directly from its definition."""
    n = k.shape[0]
    if n < 4:
        raise ValueError(f"hsic1: needs n >= 4, got {n}")
    kt = np.array(k, dtype=np.float64)
    lt = np.array(l, dtype=np.float64)
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    trace = (kt * lt.T).sum()
    ones_k = kt.sum()
    ones_l = lt.sum()
    cross = kt.sum(axis=0) @ lt.sum(axis=1)
    return float((trace + ones_k * ones_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * cross) / (n * (n - 3)))


def cka_gram(k: np.ndarray, l: np.ndarray, debiased: bool = False) -> float:
    """CKA from two Gram matrices, biased (HSIC_0) or debiased (HSIC_1)."""
    h = hsic1 if debiased else hsic0
    return h(k, l) / np.sqrt(h(k, k) * h(l, l))


def linear_cka_features(x: np.ndarray, y: np.ndarray) -> float:
    """Biased linear CKA in feature space, one pair (the textbook formula)."""
    x = np.asarray(x, dtype=np.float64) - np.mean(x, axis=0)
    y = np.asarray(y, dtype=np.float64) - np.mean(y, axis=0)
    return float(np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))

"""Verification-trial metrics: equal error rate (with its threshold) and normalised minimum DCF.

Scores: higher means "same speaker"; labels: 1 = target trial, 0 = non-target. A trial is accepted
when its score is >= the threshold. Tied scores are accepted or rejected together.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _operating_points(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P_fa, P_miss, threshold) at every distinct threshold, from "accept nothing" to "accept all"."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"verification: {s.size} scores but {y.size} labels")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("verification: labels must be 1 (target) or 0 (non-target)")
    y = y.astype(bool)
    n_tar, n_non = int(y.sum()), int((~y).sum())
    if n_tar == 0 or n_non == 0:
        raise ValueError(f"verification: need target and non-target trials, got {n_tar} and {n_non}")
    if not np.isfinite(s).all():
        raise ValueError("verification: scores must be finite")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # accept the top k only at the end of a run of equal scores
    tar = np.r_[0, np.cumsum(y)[last_of_tie]]
    non = np.r_[0, np.cumsum(~y)[last_of_tie]]
    thresholds = np.r_[np.inf, s[last_of_tie]]
    return non / n_non, 1.0 - tar / n_tar, thresholds


def eer_threshold(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[float, float]:
    """(EER, threshold): the operating point where miss and false-alarm rates are closest, their mean."""
    p_fa, p_miss, thresholds = _operating_points(scores, labels)
    k = int(np.argmin(np.abs(p_fa - p_miss)))
    return float((p_fa[k] + p_miss[k]) / 2), float(thresholds[k])


def eer(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Equal error rate as a fraction in [0, 1]."""
    return eer_threshold(scores, labels)[0]


def min_dcf(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Minimum detection cost over all thresholds, normalised by the cost of the best trivial system."""
    if not 0 < p_target < 1:
        raise ValueError(f"min_dcf: p_target must be in (0, 1), got {p_target}")
    p_fa, p_miss, _ = _operating_points(scores, labels)
    cost = c_miss * p_target * p_miss + c_fa * (1 - p_target) * p_fa
    return float(cost.min() / min(c_miss * p_target, c_fa * (1 - p_target)))

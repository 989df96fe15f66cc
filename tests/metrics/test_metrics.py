"""Metrics against plain references: threshold loops for EER/minDCF, textbook Levenshtein DP."""

from __future__ import annotations

import numpy as np
import pytest

from layerlab.metrics import accuracy, edit_distance, eer, eer_threshold, error_rate, min_dcf


def _loop_operating_points(scores: np.ndarray, labels: np.ndarray) -> list[tuple[float, float, float]]:
    """(P_fa, P_miss, threshold) for 'accept score >= t', t over +inf and every distinct score."""
    tar, non = scores[labels == 1], scores[labels == 0]
    points = []
    for t in [np.inf, *sorted(set(scores.tolist()), reverse=True)]:
        points.append((float(np.mean(non >= t)), float(np.mean(tar < t)), t))
    return points


def _ref_eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    fa, miss, t = min(_loop_operating_points(scores, labels), key=lambda p: abs(p[0] - p[1]))
    return (fa + miss) / 2, t


def _ref_min_dcf(scores: np.ndarray, labels: np.ndarray, p: float, c_miss: float, c_fa: float) -> float:
    costs = [c_miss * p * miss + c_fa * (1 - p) * fa for fa, miss, _ in _loop_operating_points(scores, labels)]
    return min(costs) / min(c_miss * p, c_fa * (1 - p))


@pytest.mark.parametrize("seed", range(6))
def test_eer_and_min_dcf_match_threshold_loops(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    labels = (rng.random(n) < 0.3).astype(int)
    labels[:2] = [0, 1]
    scores = rng.normal(size=n) + 1.2 * labels
    if seed % 2:
        scores = np.round(scores, 1)  # many ties
    ref_e, ref_t = _ref_eer(scores, labels)
    got_e, got_t = eer_threshold(scores, labels)
    assert got_e == pytest.approx(ref_e, abs=1e-12) and got_t == ref_t
    assert eer(scores, labels) == pytest.approx(ref_e, abs=1e-12)
    for p, cm, cf in ((0.01, 1, 1), (0.05, 1, 1), (0.5, 10, 1)):
        assert min_dcf(scores, labels, p, cm, cf) == pytest.approx(_ref_min_dcf(scores, labels, p, cm, cf), abs=1e-12)


def test_eer_extremes_and_errors() -> None:
    assert eer([3, 2, 1, 0], [1, 1, 0, 0]) == 0.0
    assert eer([0, 1, 2, 3], [1, 1, 0, 0]) == 1.0
    assert eer([1, 1, 1, 1], [1, 0, 1, 0]) == 0.5
    assert min_dcf([3, 2, 1, 0], [1, 1, 0, 0]) == 0.0
    with pytest.raises(ValueError, match="non-target"):
        eer([1, 2], [1, 1])
    with pytest.raises(ValueError, match="labels"):
        eer([1, 2], [1, 2])


def test_eer_matches_the_replaced_speaker_eval_definition() -> None:
    """Continuous scores (no ties): same value as the old models.speaker_eval.equal_error_rate."""
    rng = np.random.default_rng(7)
    pos, neg = rng.normal(1, 1, 80), rng.normal(0, 1, 300)
    scores = np.concatenate([pos, neg])
    labels = np.r_[np.ones(80), np.zeros(300)]
    order = np.argsort(-scores, kind="stable")
    sl = labels[order]
    fa = np.r_[0.0, np.cumsum(1 - sl) / 300]
    miss = np.r_[1.0, 1 - np.cumsum(sl) / 80]
    k = int(np.argmin(np.abs(fa - miss)))
    assert eer(scores, labels) == pytest.approx((fa[k] + miss[k]) / 2, abs=1e-15)


def _ref_levenshtein(a: list[str], b: list[str]) -> int:
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[-1][-1]


def test_edit_distance_matches_plain_levenshtein() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = [str(x) for x in rng.integers(0, 4, rng.integers(0, 12))]
        b = [str(x) for x in rng.integers(0, 4, rng.integers(0, 12))]
        assert edit_distance(a, b) == _ref_levenshtein(a, b), (a, b)
    assert edit_distance("kitten", "sitting") == 3


def test_error_rate_and_accuracy() -> None:
    refs = [["a", "b", "c"], ["d", "e"]]
    hyps = [["a", "x", "c", "y"], ["d"]]
    assert error_rate(refs, hyps) == pytest.approx(3 / 5)
    assert accuracy([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    assert accuracy(["sid1", "sid2"], ["sid1", "sid2"]) == 1.0
    with pytest.raises(ValueError):
        accuracy([1], [1, 2])
    with pytest.raises(ValueError):
        error_rate([[]], [["a"]])

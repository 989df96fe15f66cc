"""The profile's closed forms against direct computations on the raw items (float64 NumPy written from the definitions)."""

from __future__ import annotations

import numpy as np
import pytest

from layerlab.metrics.information import contingency_scores
from layerlab.profile.solve import cca_with_reference, ridge_classifier
from layerlab.profile.state import LabelMoments, ScoreCounts


def _data(seed: int = 0, n: int = 600, d: int = 12, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    means = rng.normal(0, 1.5, (k, d))
    x = means[y] + rng.normal(0, 1, (n, d)) @ rng.normal(0, 1, (d, d)) + 40.0  # offset: the shift matters numerically
    return x, y


def _state(x: np.ndarray, y: np.ndarray, k: int, parts: int, order: list[int], units: np.ndarray | None = None, num_units: int = 0) -> LabelMoments:
    shift = [x[:50].mean(0)]
    chunks = np.array_split(np.arange(len(x)), parts)
    states = []
    for idx in chunks:
        s = LabelMoments([x.shape[1]], k, shift, num_units)
        s.update(0, x[idx], y[idx], None if units is None else units[idx])
        states.append(LabelMoments.from_state_dict(s.state_dict()))
    total = states[order[0]]
    for i in order[1:]:
        total.merge(states[i])
    return total


def test_blocks_equal_direct_centred_moments_for_any_merge_order() -> None:
    x, y = _data()
    k = 5
    xc = x - x.mean(0)
    z = np.eye(k)[y]
    zc = z - z.mean(0)
    for order in ([0, 1, 2, 3], [3, 1, 0, 2], [2, 3, 1, 0]):
        b = _state(x, y, k, 4, order).blocks(0)
        assert b.n == len(x)
        np.testing.assert_allclose(b.mean, x.mean(0), rtol=0, atol=1e-10)
        np.testing.assert_allclose(b.cxx, xc.T @ xc, rtol=1e-10, atol=1e-8)
        np.testing.assert_allclose(b.cxz, xc.T @ zc, rtol=1e-10, atol=1e-8)
        np.testing.assert_allclose(b.czz, zc.T @ zc, rtol=1e-12, atol=1e-9)


def test_leave_one_group_out_blocks_equal_the_blocks_of_the_other_groups() -> None:
    x, y = _data(1)
    a = LabelMoments([x.shape[1]], 5, [x.mean(0)])
    b = LabelMoments([x.shape[1]], 5, [x.mean(0)])
    a.update(0, x[:200], y[:200])
    b.update(0, x[200:], y[200:])
    total = LabelMoments.from_state_dict(a.state_dict()).merge(b)
    loo = total.blocks(0, minus=a)
    direct = b.blocks(0)
    np.testing.assert_allclose(loo.cxx, direct.cxx, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(loo.cxz, direct.cxz, rtol=1e-9, atol=1e-7)
    assert loo.n == direct.n == 400


def test_ridge_classifier_equals_a_direct_least_squares_solve() -> None:
    x, y = _data(2, n=500, d=10, k=4)
    train, test = np.arange(350), np.arange(350, 500)
    state = LabelMoments([10], 4, [x[:20].mean(0)])
    state.update(0, x[train], y[train])
    eps = [1e-3, 1e-1, 10.0]
    clf = ridge_classifier(state.blocks(0), eps)
    xt = x[train]
    xm = xt.mean(0)
    xc = xt - xm
    zc = np.eye(4)[y[train]] - np.eye(4)[y[train]].mean(0)
    for r, e in enumerate(eps):
        lam = e * np.trace(xc.T @ xc) / 10
        # min ||Zc - Xc B||^2 + lam ||B||^2 as an ordinary least-squares problem on the augmented system
        aug_x = np.vstack([xc, np.sqrt(lam) * np.eye(10)])
        aug_z = np.vstack([zc, np.zeros((10, 4))])
        b_direct = np.linalg.lstsq(aug_x, aug_z, rcond=None)[0]
        np.testing.assert_allclose(clf.weights[r], b_direct, rtol=1e-6, atol=1e-9)
        direct_scores = (x[test] - xm) @ b_direct + np.eye(4)[y[train]].mean(0)
        np.testing.assert_allclose(clf.scores(x[test])[:, r], direct_scores, rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(clf.predict(x[test])[:, r], direct_scores.argmax(1))


def test_classifier_never_predicts_a_class_without_training_items() -> None:
    x, y = _data(3, k=4)
    keep = y != 2
    state = LabelMoments([x.shape[1]], 4, [x.mean(0)])
    state.update(0, x[keep], y[keep])
    clf = ridge_classifier(state.blocks(0), [1e-2])
    assert not clf.seen[2]
    assert (clf.predict(x) != 2).all()


def _plain_cca(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Canonical correlations from the raw matrices: cosines between orthonormal bases of the centred column spaces."""
    def basis(a: np.ndarray) -> np.ndarray:
        u, s, _ = np.linalg.svd(a - a.mean(0), full_matrices=False)
        return u[:, s > 1e-9 * s[0]]

    return np.linalg.svd(basis(x).T @ basis(z), compute_uv=False)


def test_cca_with_a_one_hot_reference_equals_cca_of_the_raw_items() -> None:
    x, y = _data(4, n=400, d=8, k=5)
    state = _state(x, y, 5, 3, [2, 0, 1])
    res = cca_with_reference(state.blocks(0), ridge=0.0)
    rho = _plain_cca(x, np.eye(5)[y])
    assert res.k == len(rho) == 4  # a one-hot of 5 classes has rank 4 once centred
    assert res.mean == pytest.approx(rho.mean(), abs=1e-8)
    assert res.r2 == pytest.approx(np.square(rho).mean(), abs=1e-8)


def test_cca_is_invariant_to_an_invertible_map_and_leaves_out_empty_classes() -> None:
    x, y = _data(5, n=400, d=6, k=4)
    state = LabelMoments([6], 6, [x.mean(0)])  # classes 4 and 5 never occur
    state.update(0, x, y)
    a = np.random.default_rng(0).normal(size=(6, 6))
    mapped = LabelMoments([6], 6, [x.mean(0) @ a])
    mapped.update(0, x @ a, y)
    r1, r2 = cca_with_reference(state.blocks(0), 0.0), cca_with_reference(mapped.blocks(0), 0.0)
    assert r1.k == 3
    assert r1.mean == pytest.approx(r2.mean, abs=1e-8)


def test_cca_of_a_constant_layer_is_nan_with_a_note_and_one_class_is_undefined() -> None:
    s = LabelMoments([3], 3, [np.zeros(3)])
    s.update(0, np.ones((10, 3)), np.arange(10) % 3)
    res = cca_with_reference(s.blocks(0))
    assert np.isnan(res.mean) and res.note
    one = LabelMoments([3], 3, [np.zeros(3)])
    one.update(0, np.random.default_rng(0).normal(size=(10, 3)), np.zeros(10, dtype=int))
    assert np.isnan(cca_with_reference(one.blocks(0)).mean)


def _mi_direct(units: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    n = len(units)
    mi, h = 0.0, 0.0
    for c in np.unique(labels):
        pc = np.mean(labels == c)
        h -= pc * np.log(pc)
        for u in np.unique(units):
            pj = np.mean((units == u) & (labels == c))
            if pj > 0:
                mi += pj * np.log(pj / (pc * np.mean(units == u)))
    label_purity = sum(np.bincount(labels[units == u]).max() for u in np.unique(units)) / n
    unit_purity = sum(np.bincount(units[labels == c]).max() for c in np.unique(labels)) / n
    return mi / h, label_purity, unit_purity


def test_contingency_from_merged_states_gives_pnmi_and_purities_of_the_items() -> None:
    x, y = _data(6, n=300, d=4, k=3)
    rng = np.random.default_rng(6)
    units = np.where(rng.random(300) < 0.7, y * 2 + rng.integers(0, 2, 300), rng.integers(0, 7, 300))
    state = _state(x, y, 3, 3, [1, 2, 0], units=units, num_units=7)
    scores = contingency_scores(state.unit_table(0))
    pnmi, lp, up = _mi_direct(units, y)
    assert scores["pnmi"] == pytest.approx(pnmi, abs=1e-12)
    assert scores["label_purity"] == pytest.approx(lp, abs=1e-12)
    assert scores["unit_purity"] == pytest.approx(up, abs=1e-12)
    assert contingency_scores(np.eye(3))["pnmi"] == pytest.approx(1.0)


def test_kmeans_assignment_is_the_nearest_centroid() -> None:
    import torch

    from layerlab.kmeans import assign, kmeans

    rng = np.random.default_rng(7)
    x = np.concatenate([rng.normal(c, 0.3, (100, 5)) for c in (0.0, 4.0, 8.0)]).astype(np.float32)
    c = kmeans(torch.from_numpy(x), 3, 10, seed=0)
    got = assign(x, c, chunk=37).numpy()
    direct = np.linalg.norm(x[:, None, :] - c.numpy()[None], axis=2).argmin(1)
    np.testing.assert_array_equal(got, direct)
    assert len(np.unique(got)) == 3
    with pytest.raises(ValueError, match="need at least k rows"):
        kmeans(torch.from_numpy(x[:2]), 3, 5, seed=0)


def test_score_counts_merge_and_mismatched_states_are_refused() -> None:
    a, b = ScoreCounts(2, 3), ScoreCounts(2, 3)
    a.update(0, [1, 2, 3], 4)
    b.update(0, [1, 0, 1], 2)
    b.update(1, [1, 1, 1], 1)
    acc = ScoreCounts.from_state_dict(a.state_dict()).merge(b).compute()
    np.testing.assert_allclose(acc[0], [2 / 6, 2 / 6, 4 / 6])
    np.testing.assert_allclose(acc[1], [1, 1, 1])
    with pytest.raises(ValueError, match="merge"):
        a.merge(ScoreCounts(2, 4))
    s = LabelMoments([3], 2, [np.zeros(3)])
    with pytest.raises(ValueError, match="incompatible"):
        s.merge(LabelMoments([4], 2))
    t = LabelMoments([3], 2, [np.ones(3)])
    s.update(0, np.ones((2, 3)), [0, 1])
    t.update(0, np.ones((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="different shifts"):
        s.merge(t)


def test_profile_states_follow_the_accumulator_protocol_and_round_trip_through_bytes() -> None:
    from layerlab.accumulator import Accumulator, merge_all, state_from_bytes, state_to_bytes

    x, y = _data(8, n=200, d=5, k=3)
    parts = []
    for idx in np.array_split(np.arange(200), 5):
        s = LabelMoments([5], 3, [x.mean(0)], num_units=4)
        s.update(0, x[idx], y[idx], units=y[idx] % 4)
        assert isinstance(s, Accumulator)
        parts.append(LabelMoments.from_state_dict(state_from_bytes(state_to_bytes(s.state_dict()))))
    merged = merge_all(parts)
    direct = LabelMoments([5], 3, [x.mean(0)], num_units=4)
    direct.update(0, x, y, units=y % 4)
    np.testing.assert_allclose(merged.blocks(0).cxx, direct.blocks(0).cxx, rtol=1e-10, atol=1e-9)
    np.testing.assert_array_equal(merged.unit_table(0), direct.unit_table(0))
    assert isinstance(ScoreCounts(1, 1), Accumulator)

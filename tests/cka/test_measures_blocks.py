"""Pair measures from second-moment blocks equal independent raw-data references; invariances; degenerate cases."""

from __future__ import annotations

import numpy as np
import pytest
from cka_helpers import layer_stack

import measure_reference as ref
from layerlab.cka import FeatureCKA
from layerlab.cka import measures as ms


def blocks(x: np.ndarray, y: np.ndarray, shards: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cxx, cyy, cxy from a FeatureCKA state built from ``shards`` uneven shards merged in a shuffled order."""
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    cuts = np.sort(rng.choice(np.arange(1, n), size=shards - 1, replace=False))
    shift = np.concatenate([x[:7].mean(0), y[:7].mean(0)])
    parts = []
    for idx in np.split(np.arange(n), cuts):
        acc = FeatureCKA([x.shape[1], y.shape[1]], shift=shift)
        acc.update([x[idx], y[idx]])
        parts.append(acc)
    order = rng.permutation(len(parts))
    total = parts[order[0]]
    for k in order[1:]:
        total.merge(parts[k])
    return tuple(total.centred_block(a, b).numpy() for a, b in ((0, 0), (1, 1), (0, 1)))


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    x, y = layer_stack(400, [9, 14], seed=4, offset=30.0)
    return x, y


@pytest.mark.parametrize("ridge", [0.0, 1e-3])
def test_canonical_correlations_equal_qr_reference(pair, ridge):
    x, y = pair
    res = ms.canonical_correlations(*blocks(x, y), ridge=ridge)
    rho, w = ref.cca_qr(x, y, ridge)
    assert res.rho.shape == (9,) and np.all(np.diff(res.rho) <= 0) and 0 < res.rho[-1] <= res.rho[0] <= 1
    np.testing.assert_allclose(res.rho, rho, atol=1e-8, rtol=0)
    # canonical weights agree up to the sign of each pair
    signs = np.sign(np.sum(res.weights_a * w, axis=0))
    np.testing.assert_allclose(res.weights_a * signs, w, atol=1e-8 * np.abs(w).max(), rtol=0)
    assert res.ridge == ridge and res.rank_a == 9 and res.rank_b == 14 and res.note == ""
    if ridge:
        assert res.lambda_a == pytest.approx(ridge * np.square(ref.centre(x)).sum() / 9, rel=1e-10)


def test_pair_measures_equal_references(pair):
    x, y = pair
    cxx, cyy, cxy = blocks(x, y, shards=7, seed=2)
    res = ms.canonical_correlations(cxx, cyy, cxy, ridge=0.0)
    assert abs(ms.cca_r2(res) - ref.cca_r2(x, y)) < 1e-8
    assert abs(ms.cca_mean(res) - ref.cca_mean(x, y)) < 1e-8
    assert abs(ms.pwcca(cxx, res) - ref.pwcca(x, y)) < 1e-8
    assert abs(ms.svcca(cxx, cyy, cxy, fraction=0.99, ridge=0.0)[0] - ref.svcca(x, y, 0.99)) < 1e-8
    assert abs(ms.svcca(cxx, cyy, cxy, fraction=0.8, ridge=0.0)[0] - ref.svcca(x, y, 0.8)) < 1e-8
    assert abs(ms.procrustes(cxx, cyy, cxy) - ref.procrustes(x, y)) < 1e-8
    lam = 1e-2 * np.trace(cxx) / 9
    assert abs(ms.ridge_r2_in_sample(cxx, cyy, cxy, lam) - ref.ridge_r2(x, y, lam)) < 1e-8
    # PWCCA is asymmetric (weights from side a), the others symmetric
    res_ba = ms.canonical_correlations(cyy, cxx, cxy.T, ridge=0.0)
    assert abs(ms.pwcca(cyy, res_ba) - ref.pwcca(y, x)) < 1e-8
    assert abs(ms.pwcca(cyy, res_ba) - ms.pwcca(cxx, res)) > 1e-4


def test_invariances(pair):
    x, y = pair
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((9, 9)))
    invertible = rng.standard_normal((9, 9)) + 3 * np.eye(9)
    base = blocks(x, y)
    res0 = ms.canonical_correlations(*base, ridge=0.0)
    for moved, all_measures in ((2.5 * x @ q + 40.0, True), (x @ invertible - 3.0, False)):
        cb = blocks(moved, y)
        res = ms.canonical_correlations(*cb, ridge=0.0)
        np.testing.assert_allclose(res.rho, res0.rho, atol=1e-9)  # CCA: any invertible linear map
        if all_measures:  # orthogonal map, isotropic scaling, translation: every measure but PWCCA
            assert abs(ms.procrustes(*cb) - ms.procrustes(*base)) < 1e-9
            assert abs(ms.svcca(*cb)[0] - ms.svcca(*base)[0]) < 1e-9
            assert abs(ms.linear_cka(*cb) - ms.linear_cka(*base)) < 1e-9
    # PWCCA weighs canonical variates by their L1 projection on the *neurons* (Morcos et al.): invariant to
    # permuting neurons, flipping their signs and isotropic scaling, but not to a rotation of the neuron basis
    perm = np.eye(9)[rng.permutation(9)] * rng.choice([-1.0, 1.0], size=9)
    cb = blocks(3.0 * x @ perm + 5.0, y)
    assert abs(ms.pwcca(cb[0], ms.canonical_correlations(*cb, ridge=0.0)) - ms.pwcca(base[0], res0)) < 1e-9
    cb = blocks(x @ q, y)
    assert abs(ms.pwcca(cb[0], ms.canonical_correlations(*cb, ridge=0.0)) - ms.pwcca(base[0], res0)) > 1e-7
    # Procrustes and linear CKA are not invariant to a general invertible map
    cb = blocks(x @ invertible, y)
    assert abs(ms.procrustes(*cb) - ms.procrustes(*base)) > 1e-3


def test_rank_deficient_and_wide_layers_are_defined_with_a_note():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((60, 4)) @ rng.standard_normal((4, 10))  # rank 4 of 10
    y = x[:, :6] + 0.5 * rng.standard_normal((60, 6))
    res = ms.canonical_correlations(*blocks(x, y), ridge=0.0)
    assert res.rank_a == 4 and res.rank_b == 6 and "rank deficient" in res.note
    np.testing.assert_allclose(res.rho[:4], ref.cca_qr(x, y)[0][:4], atol=1e-8)
    assert np.all(res.rho[4:] == 0) and np.isfinite(ms.cca_mean(res))
    wide = rng.standard_normal((20, 30))  # d > n
    res = ms.canonical_correlations(*blocks(wide, rng.standard_normal((20, 25))), ridge=1e-6, n=20)
    assert res.rank_a == 19 and "more dimensions than items" in res.note
    assert np.all(np.isfinite(res.rho)) and np.all(res.rho <= 1)


def test_constant_layer_says_so():
    rng = np.random.default_rng(6)
    x, y = np.full((50, 3), 7.0), rng.standard_normal((50, 4))
    cxx, cyy, cxy = blocks(x, y)
    res = ms.canonical_correlations(cxx, cyy, cxy)
    assert res.constant and "constant layer" in res.note and np.all(res.rho == 0)
    assert np.isnan(ms.cca_mean(res)) and np.isnan(ms.procrustes(cxx, cyy, cxy))


def test_bad_blocks_and_ridge():
    with pytest.raises(ValueError, match="cxy"):
        ms.canonical_correlations(np.eye(3), np.eye(2), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="ridge"):
        ms.canonical_correlations(np.eye(3), np.eye(2), np.zeros((3, 2)), ridge=-1.0)

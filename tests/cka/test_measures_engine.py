"""All-pairs measures from a merged (and leave-one-group-out) FeatureCKA state equal raw-data references."""

from __future__ import annotations

import numpy as np
import pytest
from cka_helpers import layer_stack

import measure_reference as ref
from layerlab.cka import FeatureCKA
from layerlab.cka.measure_registry import MEASURES, MeasureOptions, parse_measures
from layerlab.cka.moment_measures import moment_matrices
from layerlab.cka.predictivity import assign_folds, ridge_r2_matrix

DIMS = [6, 9, 5]
SECOND_MOMENT = ["linear_cka", "cca_r2", "cca_mean", "svcca", "pwcca", "procrustes"]


@pytest.fixture(scope="module")
def data() -> tuple[list[np.ndarray], np.ndarray]:
    layers = layer_stack(600, DIMS, seed=7, offset=25.0)
    groups = np.repeat(np.arange(8), [40, 95, 60, 120, 33, 87, 70, 95])  # uneven speakers
    return layers, groups


def group_states(layers: list[np.ndarray], groups: np.ndarray, order_seed: int) -> tuple[FeatureCKA, list[FeatureCKA]]:
    shift = np.concatenate([x[:5].mean(0) for x in layers])
    parts = []
    for g in np.unique(groups):
        acc = FeatureCKA(DIMS, shift=shift)
        idx = np.flatnonzero(groups == g)
        for chunk in np.array_split(idx, 3):
            acc.update([x[chunk] for x in layers])
        parts.append(acc)
    order = np.random.default_rng(order_seed).permutation(len(parts))
    total = FeatureCKA(DIMS, shift=shift)
    for k in order:
        total.merge(FeatureCKA.from_state_dict(parts[k].state_dict()))
    return total, parts


def reference(name: str, x: np.ndarray, y: np.ndarray, opts: MeasureOptions) -> float:
    if name == "linear_cka":
        return float(np.linalg.norm(ref.centre(x).T @ ref.centre(y)) ** 2
                     / (np.linalg.norm(ref.centre(x).T @ ref.centre(x)) * np.linalg.norm(ref.centre(y).T @ ref.centre(y))))
    if name == "svcca":
        return ref.svcca(x, y, opts.svcca_fraction, opts.ridge)
    if name == "procrustes":
        return ref.procrustes(x, y)
    return getattr(ref, name)(x, y, opts.ridge)


@pytest.mark.parametrize("order_seed", [0, 1])
def test_every_measure_of_every_pair_equals_the_reference(data, order_seed):
    layers, groups = data
    total, _ = group_states(layers, groups, order_seed)
    opts = MeasureOptions(ridge=1e-4, svcca_fraction=0.9)
    out = moment_matrices(total, SECOND_MOMENT, opts)
    worst = 0.0
    for name in SECOND_MOMENT:
        mat = out[name].values
        assert mat.shape == (3, 3) and np.isfinite(mat).all()
        for a in range(3):
            for b in range(3):
                worst = max(worst, abs(mat[a, b] - reference(name, layers[a], layers[b], opts)))
        lo, hi = MEASURES[name].low, MEASURES[name].high
        assert (mat >= lo).all() and (mat <= hi).all()
    assert worst < 1e-8
    alone = moment_matrices(total, ["cca_r2"], opts)["cca_r2"].values  # ||T||_F^2 / k, no SVD
    np.testing.assert_allclose(alone, out["cca_r2"].values, atol=1e-12, rtol=0)
    assert abs(out["pwcca"].values[0, 1] - out["pwcca"].values[1, 0]) > 1e-4  # asymmetric, both directions kept
    np.testing.assert_allclose(out["cca_mean"].values, out["cca_mean"].values.T, atol=1e-12)


def test_ridge_r2_held_out_equals_the_reference_and_picks_the_cv_best_penalty(data):
    layers, groups = data
    total, parts = group_states(layers, groups, 3)
    opts = MeasureOptions(ridge_grid=[1e-4, 1e-2, 1.0, 10.0], ridge_folds=3)
    mat, reps = ridge_r2_matrix(total, parts, opts)
    fold_of = assign_folds([p.n for p in parts], 3)
    folds = np.array([fold_of[g] for g in groups])
    eps = np.array(mat.info["eps_chosen"])
    for a in range(3):
        for b in range(3):
            scores = [ref.ridge_r2_held_out(layers[a], layers[b], folds, e) for e in opts.ridge_grid]
            assert eps[a, b] == opts.ridge_grid[int(np.argmax(scores))]
            assert abs(mat.values[a, b] - max(scores)) < 1e-8
    assert mat.values[0, 0] > 0.99 and mat.values[0, 2] < mat.values[0, 1]  # drifting layers: nearer predicts better
    assert abs(mat.values[0, 2] - mat.values[2, 0]) > 1e-3  # asymmetric
    # replicates: the held-out errors without each group (fits fixed)
    assert reps.shape == (8, 3, 3) and np.isfinite(reps).all()
    assert not np.allclose(reps[0], mat.values)


def test_ridge_r2_needs_two_groups(data):
    layers, groups = data
    total, _ = group_states(layers, groups, 0)
    mat, reps = ridge_r2_matrix(total, [total])
    assert reps is None and np.isnan(mat.values).all() and "at least 2 groups" in mat.notes[0, 0]


def test_unknown_measure_is_one_line_listing_the_allowed():
    with pytest.raises(ValueError) as err:
        parse_measures("cca_r2,cka_rbf")
    assert "'cka_rbf'" in str(err.value) and "mutual_knn" in str(err.value) and "\n" not in str(err.value)
    assert parse_measures(None) == ["linear_cka"] and parse_measures(" svcca, pwcca,svcca") == ["svcca", "pwcca"]

"""RBF CKA and mutual k-NN on samples: published value, raw-data references, invariances, the sample plan."""

from __future__ import annotations

import numpy as np
import pytest

from layerlab.cka import reference as ref
from layerlab.cka.measure_registry import MeasureOptions
from layerlab.cka.sample_measures import Sample, check_sample_options, mutual_knn_matrix, plan_sample, rbf_cka_matrix, sample_matrices


@pytest.fixture()
def demo_inputs() -> tuple[np.ndarray, np.ndarray]:
    np.random.seed(1337)  # Kornblith et al.'s demo inputs (tests/cka/test_cka_reference_values.py)
    x = np.random.randn(100, 10)
    y = np.random.randn(100, 10) + x
    return x, y


def test_rbf_cka_reproduces_the_published_value(demo_inputs):
    x, y = demo_inputs
    mat, sigmas = rbf_cka_matrix([x, y], threshold=0.5)
    assert round(float(mat[0, 1]), 5) == 0.65483
    assert mat[0, 0] == pytest.approx(1.0) and len(sigmas) == 2


def knn_reference(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Huh et al.: cosine neighbours (self excluded) of every item in both spaces; mean |shared| / k."""
    def neighbours(z: np.ndarray) -> list[set[int]]:
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        sim = z @ z.T
        np.fill_diagonal(sim, -np.inf)
        return [set(np.argsort(-row, kind="stable")[:k]) for row in sim]

    nx, ny = neighbours(x), neighbours(y)
    return float(np.mean([len(a & b) / k for a, b in zip(nx, ny)]))


def test_rbf_and_knn_equal_raw_data_references():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((150, 12)) + 5.0
    y = np.tanh(x @ rng.standard_normal((12, 7))) + 0.3 * rng.standard_normal((150, 7))
    for debiased in (False, True):
        for sigma in (None, 2.5):
            mat, _ = rbf_cka_matrix([x, y], sigma=sigma, threshold=0.8, debiased=debiased)
            if sigma is None:
                kx, ky = ref.gram_rbf(x, 0.8), ref.gram_rbf(y, 0.8)
            else:
                def gram(z):
                    d = np.square(z[:, None] - z[None]).sum(-1)
                    return np.exp(-d / (2 * sigma**2))
                kx, ky = gram(x), gram(y)
            assert abs(mat[0, 1] - ref.cka_gram(kx, ky, debiased=debiased)) < 1e-8
    for k in (1, 5, 20):
        assert abs(mutual_knn_matrix([x, y], k)[0, 1] - knn_reference(x, y, k)) < 1e-12


def test_invariances_of_the_sample_measures():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((120, 8)), rng.standard_normal((120, 6))
    y[:, :3] += x[:, :3]
    q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    base_rbf = rbf_cka_matrix([x, y])[0][0, 1]
    base_knn = mutual_knn_matrix([x, y], 7)[0, 1]
    moved = 3.0 * x @ q
    assert abs(rbf_cka_matrix([moved + 10.0, y])[0][0, 1] - base_rbf) < 1e-10  # rotation, scaling, translation
    assert abs(mutual_knn_matrix([moved, y], 7)[0, 1] - base_knn) < 1e-12  # rotation, scaling (cosine: not translation)


def test_the_sample_plan_is_seeded_speaker_balanced_and_checked():
    index = [(f"u{s}-{k}", f"spk{s}", 10 + 7 * s) for s in range(5) for k in range(3)]  # 5 speakers, 30..114 frames each
    plan = plan_sample(index, 100, seed=3)
    again = plan_sample(list(reversed(index)), 100, seed=3)
    assert {u: list(v) for u, v in plan.chosen.items()} == {u: list(v) for u, v in again.chosen.items()}
    per_speaker = {}
    for uid, picks in plan.chosen.items():
        per_speaker[uid.split("-")[0]] = per_speaker.get(uid.split("-")[0], 0) + len(picks)
        assert len(set(picks)) == len(picks) and all(0 <= p < 10 + 7 * int(uid[1]) for p in picks)
    assert sum(per_speaker.values()) == 100 and max(per_speaker.values()) - min(per_speaker.values()) <= 1
    assert plan_sample(index, 100, seed=4).chosen.keys() != plan.chosen.keys() or any(
        list(plan_sample(index, 100, seed=4).chosen[u]) != list(v) for u, v in plan.chosen.items())
    small = [("a", "s1", 3), ("b", "s2", 50)]
    assert sum(len(v) for v in plan_sample(small, 20, 0).chosen.values()) == 20  # s1 gives its 3, s2 the rest
    with pytest.raises(ValueError, match=r"--sample-size 60: larger than the data \(53 frames"):
        plan_sample(small, 60, 0)
    with pytest.raises(ValueError, match="--knn-k 50: must be below the sample size"):
        check_sample_options(MeasureOptions(sample_size=50, knn_k=50), ["mutual_knn"], 3)
    with pytest.raises(ValueError, match="GiB"):
        check_sample_options(MeasureOptions(sample_size=40000), ["rbf_cka"], 3)


def test_sample_intervals_leave_one_group_out():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((90, 5))
    layers = [x, x + 0.5 * rng.standard_normal((90, 5)), rng.standard_normal((90, 4))]
    groups = [f"spk{i % 6}" for i in range(90)]
    sample = Sample(layers, [f"u{i}" for i in range(90)], [0] * 90, groups, groups)
    out = sample_matrices(sample, ["rbf_cka", "mutual_knn"], MeasureOptions(knn_k=5), intervals=True)
    for name, res in out.items():
        assert res.replicates.shape == (6, 3, 3) and res.groups == [f"spk{i}" for i in range(6)]
        keep = np.array(groups) != "spk2"
        if name == "mutual_knn":
            np.testing.assert_allclose(res.replicates[2], mutual_knn_matrix([z[keep] for z in layers], 5), atol=1e-12)
        assert (res.ci.low <= res.values + 1e-12).all() and (res.ci.high <= 1.0).all() and res.ci.low[0, 1] < res.ci.high[0, 1]
        assert res.values[0, 1] > res.values[0, 2]

"""Honest uncertainty: the leave-one-speaker-out jackknife interval covers the population CKA.

Simulation with known population CKA: G speakers x m utterances; X = z A + noise, Y = (rho z + sqrt(1-rho^2) w) B + noise,
where z and w carry a speaker effect (so utterances of one speaker are correlated, as in real corpora).
Population CKA = ||S_xy||^2 / (||S_xx|| ||S_yy||) from the population covariances. The fast test checks
the 95 % interval's coverage is within 90-98 % over dependence strengths and 10-60 speakers, and that
the estimate always lies inside its interval; the library path (FeatureCKA group states ->
jackknife_cka) is checked to compute exactly these leave-one-out values. The old percentile bootstrap
over speakers (with replacement) fails the containment check (the reproduced defect).
"""

from __future__ import annotations

import numpy as np
import pytest

from layerlab.metrics.ci import jackknife_interval

D, K, M = 6, 4, 8  # features per model, latent dims, utterances per speaker


def _population_cka(a: np.ndarray, b: np.ndarray, rho: float) -> float:
    sxx = a.T @ a + 0.5 * np.eye(D)
    syy = b.T @ b + 0.5 * np.eye(D)
    sxy = rho * a.T @ b
    return float((sxy**2).sum() / np.sqrt((sxx**2).sum() * (syy**2).sum()))


def _sample(rng: np.random.Generator, groups: int, rho: float, speaker_share: float = 0.6):
    a, b = rng.normal(size=(K, D)), rng.normal(size=(K, D))
    spk_z = rng.normal(size=(groups, 1, K)) * np.sqrt(speaker_share)
    spk_w = rng.normal(size=(groups, 1, K)) * np.sqrt(speaker_share)
    z = spk_z + rng.normal(size=(groups, M, K)) * np.sqrt(1 - speaker_share)
    w = spk_w + rng.normal(size=(groups, M, K)) * np.sqrt(1 - speaker_share)
    x = z @ a + rng.normal(size=(groups, M, D)) * np.sqrt(0.5)
    y = (rho * z + np.sqrt(1 - rho**2) * w) @ b + rng.normal(size=(groups, M, D)) * np.sqrt(0.5)
    return _population_cka(a, b, rho), x, y


def _cka(n, s: np.ndarray, m: np.ndarray):
    """Biased linear CKA of [X, Y] from n, column sums s and raw second moments m (batched over leading axes)."""
    n = np.asarray(n, dtype=float)[..., None, None]
    c = m - s[..., :, None] * s[..., None, :] / n
    xy = (c[..., :D, D:] ** 2).sum((-1, -2))
    return xy / np.sqrt((c[..., :D, :D] ** 2).sum((-1, -2)) * (c[..., D:, D:] ** 2).sum((-1, -2)))


def _jackknife(x: np.ndarray, y: np.ndarray):
    u = np.concatenate([x, y], axis=2)  # [G, M, 2D]
    s_g = u.sum(axis=1)
    m_g = np.einsum("gmi,gmj->gij", u, u)
    n, s, m = u.shape[0] * u.shape[1], s_g.sum(0), m_g.sum(0)
    est = float(_cka(n, s, m))
    loo = _cka(np.full(u.shape[0], n - u.shape[1]), s[None] - s_g, m[None] - m_g)
    return est, loo


def _percentile_bootstrap(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, reps: int = 100):
    """The interval layerlab used before: resample speakers with replacement, 2.5/97.5 percentiles."""
    u = np.concatenate([x, y], axis=2)
    s_g, m_g = u.sum(axis=1), np.einsum("gmi,gmj->gij", u, u)
    g = u.shape[0]
    vals = []
    for _ in range(reps):
        w = np.bincount(rng.integers(0, g, g), minlength=g).astype(float)
        vals.append(float(_cka(w.sum() * u.shape[1], (w[:, None] * s_g).sum(0), (w[:, None, None] * m_g).sum(0))))
    return np.percentile(vals, [2.5, 97.5])


def coverage_table(reps: int, seed: int = 0) -> dict[tuple[int, float], tuple[float, float]]:
    """(groups, rho) -> (coverage of the 95 % jackknife interval, fraction with the estimate inside)."""
    rng = np.random.default_rng(seed)
    table = {}
    for groups in (10, 30, 60):
        for rho in (0.3, 0.6, 0.9):
            covered = inside = 0
            for _ in range(reps):
                pop, x, y = _sample(rng, groups, rho)
                est, loo = _jackknife(x, y)
                ci = jackknife_interval(est, loo)
                covered += ci.low <= pop <= ci.high
                inside += ci.low <= est <= ci.high
            table[(groups, rho)] = (covered / reps, inside / reps)
    return table


def test_jackknife_interval_covers_the_population_cka() -> None:
    table = coverage_table(reps=200)
    overall = np.mean([c for c, _ in table.values()])
    assert 0.90 <= overall <= 0.98, table
    for (groups, rho), (cov, inside) in table.items():
        assert 0.87 <= cov <= 0.99, (groups, rho, cov)  # per cell (200 runs: +-1.5 % sampling error)
        assert inside == 1.0


def test_the_old_percentile_bootstrap_misses_its_own_estimate() -> None:
    """The defect: duplicated speakers inflate CKA, so the estimate often lies outside its bootstrap interval."""
    rng = np.random.default_rng(1)
    below = 0
    for _ in range(60):
        _, x, y = _sample(rng, 10, 0.0)  # weak dependence, 10 speakers: the reported case (debiased 0.0249, CI [0.0349, 0.1397])
        est, _ = _jackknife(x, y)
        lo, _ = _percentile_bootstrap(rng, x, y)
        below += est < lo
    assert below >= 3  # ~10 % of runs; the jackknife interval contains its estimate every time (test above)


def test_library_cka_jackknife_equals_the_simulated_one() -> None:
    from layerlab.cka.feature_stats import FeatureCKA
    from layerlab.cka.intervals import jackknife_cka

    rng = np.random.default_rng(5)
    _, x, y = _sample(rng, 12, 0.6)
    shift = np.concatenate([x.reshape(-1, D).mean(0), y.reshape(-1, D).mean(0)])
    groups = []
    for g in range(x.shape[0]):
        acc = FeatureCKA([D], [D], mode="cross", shift=shift)
        acc.update([x[g], y[g]])
        groups.append(acc)
    lib = jackknife_cka(groups)
    est, loo = _jackknife(x, y)
    ref = jackknife_interval(est, loo)
    assert lib.estimate[0, 0] == pytest.approx(est, abs=1e-10)
    assert (lib.low[0, 0], lib.high[0, 0]) == pytest.approx((ref.low, ref.high), abs=1e-9)


def test_group_jackknife_for_probe_metrics_and_few_groups_warn() -> None:
    from layerlab.metrics import accuracy, eer, group_jackknife

    rng = np.random.default_rng(0)
    speakers = np.repeat([f"s{i}" for i in range(20)], 10)
    truth = rng.integers(0, 3, speakers.size)
    pred = np.where(rng.random(speakers.size) < 0.8, truth, (truth + 1) % 3)
    ci = group_jackknife(lambda keep: accuracy(pred[keep], truth[keep]), speakers)
    assert ci.low < ci.estimate == accuracy(pred, truth) < ci.high and ci.n_groups == 20
    # verification trials belong to both speakers: leaving one out drops every trial that involves them
    enrol, test = rng.integers(0, 20, 300), rng.integers(0, 20, 300)
    labels = (enrol == test).astype(int)
    labels[:5] = [1, 0, 1, 0, 1]
    scores = labels + rng.normal(0, 0.8, 300)
    trial_groups = [(f"s{a}", f"s{b}") for a, b in zip(enrol, test)]
    e = group_jackknife(lambda keep: eer(scores[keep], labels[keep]), trial_groups)
    assert e.low <= e.estimate <= e.high
    with pytest.warns(UserWarning, match="only 4 groups"):
        group_jackknife(lambda keep: float(keep.mean()), ["a", "b", "c", "d"])


@pytest.mark.slow
def test_print_coverage_table() -> None:
    """The closing note's table (run with -m slow -s)."""
    table = coverage_table(reps=400, seed=2)
    print("\ngroups  rho  coverage  estimate-inside")
    for (groups, rho), (cov, inside) in table.items():
        print(f"{groups:6d} {rho:4.1f} {cov:9.3f} {inside:9.3f}")
    assert 0.90 <= np.mean([c for c, _ in table.values()]) <= 0.98

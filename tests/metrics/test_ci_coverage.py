"""Honest uncertainty: the leave-one-speaker-out jackknife interval covers the population CKA.

Simulation with known population CKA: G speakers x m utterances; X = z A + noise, Y = (rho z + sqrt(1-rho^2) w) B + noise,
where z and w carry a speaker effect (so utterances of one speaker are correlated, as in real corpora).
Population CKA = ||S_xy||^2 / (||S_xx|| ||S_yy||) from the population covariances. The fast test checks
the 95 % interval's coverage is within 90-98 % over dependence strengths and 10-60 speakers, and that
the estimate always lies inside its interval; the library path (FeatureCKA group states ->
jackknife_cka) is checked to compute exactly these leave-one-out values. The old percentile bootstrap
over speakers (with replacement) fails the containment check (the reproduced defect).

Bounded probe metrics (accuracy, EER in [0, 1], PER in [0, inf)): clustered simulations with known
population value (per-speaker random effects, 8-20 utterances per speaker) check that the bounded
interval covers 92-97 % in every cell (accuracy/EER/PER x 5/10/30 speakers x p = 0.5/0.9/0.98) and never
leaves the range, where ``estimate ± t * SE`` leaves [0, 1] and has
zero width when every speaker scores alike.
"""

from __future__ import annotations

import numpy as np
import pytest

import warnings

from scipy.stats import norm

from layerlab.metrics import eer
from layerlab.metrics.ci import METRIC_BOUNDS, bounded_interval, jackknife_interval

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


# --- bounded probe metrics: clustered simulations with a known population value ---------------------------

def _utterances(rng: np.random.Generator, groups: int) -> np.ndarray:
    return rng.integers(8, 21, groups)


def _accuracy_replicates(rng: np.random.Generator, groups: int, p: float, kappa: float = 20.0):
    """Speaker accuracies ~ Beta(p kappa, (1-p) kappa) (ICC 1/(kappa+1)); population accuracy p."""
    m = _utterances(rng, groups)
    c = rng.binomial(m, rng.beta(p * kappa, (1 - p) * kappa, groups))
    return c.sum() / m.sum(), (c.sum() - c) / (m.sum() - m), m.sum(), m.sum() - m, p


def _per_replicates(rng: np.random.Generator, groups: int, p: float, shape: float = 10.0):
    """Speaker error rates ~ Gamma (mean 1-p, CV 0.32), 20-40 phones per utterance, Poisson edits (insertions allowed)."""
    m = _utterances(rng, groups)
    phones = np.array([rng.integers(20, 41, k).sum() for k in m])
    edits = rng.poisson(rng.gamma(shape, (1 - p) / shape, groups) * phones)
    return edits.sum() / phones.sum(), (edits.sum() - edits) / (phones.sum() - phones), m.sum(), m.sum() - m, 1 - p


def _eer_replicates(rng: np.random.Generator, groups: int, p: float, tau: float = 0.5, sc: float = 0.3, per_pair: int = 12):
    """Trials grouped by both speakers: target score d + b_spk + N(0,1), non-target c_a + c_b + N(0,1); population EER 1-p.

    Marginals are N(d, 1+tau^2) and N(0, 1+2 sc^2), so EER = Phi(-d / (s1 + s0)) exactly.
    """
    s1, s0 = np.sqrt(1 + tau**2), np.sqrt(1 + 2 * sc**2)
    d = -(s0 + s1) * norm.ppf(1 - p)
    b, c = rng.normal(0, tau, groups), rng.normal(0, sc, groups)
    tspk = np.repeat(np.arange(groups), 3 * _utterances(rng, groups))
    ia, ib = np.triu_indices(groups, 1)
    na, nb = np.repeat(ia, per_pair), np.repeat(ib, per_pair)
    scores = np.r_[d + b[tspk] + rng.normal(size=tspk.size), c[na] + c[nb] + rng.normal(size=na.size)]
    labels = np.r_[np.ones(tspk.size, dtype=int), np.zeros(na.size, dtype=int)]
    a, bb = np.r_[tspk, na], np.r_[tspk, nb]
    keeps = [(a != g) & (bb != g) for g in range(groups)]
    loo = np.array([eer(scores[k], labels[k]) for k in keeps])
    return eer(scores, labels), loo, scores.size, np.array([k.sum() for k in keeps]), 1 - p


_SIMULATE = {"accuracy": _accuracy_replicates, "eer": _eer_replicates, "per": _per_replicates}


def bounded_coverage(metric: str, groups: int, p: float, reps: int, seed: int = 0, old: bool = False) -> dict[str, float]:
    """Coverage, range violations and zero-width share of 95 % intervals for one cell (old: estimate ± t SE)."""
    rng = np.random.default_rng(seed)
    bounds = METRIC_BOUNDS[metric]
    covered = outside = zero = missing_estimate = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 5 groups: the few-groups warning, once per replication
        for _ in range(reps):
            est, loo, units, left, truth = _SIMULATE[metric](rng, groups, p)
            ci = jackknife_interval(est, loo) if old else bounded_interval(est, loo, units, left, bounds)
            covered += ci.low <= truth <= ci.high
            outside += ci.low < bounds.low or ci.high > bounds.high
            zero += not ci.high > ci.low
            missing_estimate += not ci.low <= est <= ci.high
    return {"coverage": covered / reps, "outside": outside / reps, "zero_width": zero / reps, "estimate_outside": missing_estimate / reps}


def test_bounded_intervals_stay_in_range_where_the_old_ones_did_not() -> None:
    """The reported defects (5 speakers x 8-20 utterances at accuracy 0.98, EER 0.02): t-intervals leave [0, 1] or have zero width."""
    for metric in ("accuracy", "eer"):
        old = bounded_coverage(metric, 5, 0.98, reps=60, seed=7, old=True)
        new = bounded_coverage(metric, 5, 0.98, reps=60, seed=7)
        assert old["outside"] + old["zero_width"] > 0.2, (metric, old)
        assert new["outside"] == new["zero_width"] == new["estimate_outside"] == 0, (metric, new)
        assert new["coverage"] >= 0.85, (metric, new)


@pytest.mark.filterwarnings("ignore:confidence interval from only")
def test_bounded_interval_at_the_edges() -> None:
    """0 % and 100 % still give a positive width inside [0, 1]; PER above 1 (insertions) is allowed; the estimate stays inside."""
    m = np.full(6, 12)
    for est in (0.0, 1.0):
        ci = bounded_interval(est, np.full(6, est), m.sum(), m.sum() - m, METRIC_BOUNDS["accuracy"])
        assert 0.0 <= ci.low <= est <= ci.high <= 1.0 and ci.high - ci.low > 0.01, ci
    ci = bounded_interval(0.0, np.zeros(6), m.sum(), m.sum() - m, METRIC_BOUNDS["per"])
    assert ci.low == 0.0 < ci.high and np.isfinite(ci.high)
    ci = bounded_interval(1.3, np.array([1.2, 1.4, 1.25, 1.35, 1.3, 1.31]), 72, m.sum() - m, METRIC_BOUNDS["per"])
    assert 0.0 < ci.low < 1.3 < ci.high and "log-scale" in ci.method
    with pytest.warns(UserWarning, match="only 6 groups"):
        bounded_interval(0.5, np.full(6, 0.5), 72, m.sum() - m, METRIC_BOUNDS["accuracy"])


def test_a_metric_undefined_without_any_one_group_gets_no_interval_and_says_why() -> None:
    """An EER on a few speakers: leaving any one out removes every target trial, so no replicate is defined. The row keeps
    its estimate with no interval and a note (a tiny study's ASV stage failed on this)."""
    m = np.full(3, 10)
    ci = bounded_interval(0.2, np.full(3, np.nan), 30, m.sum() - m, METRIC_BOUNDS["eer"])
    assert ci.estimate == 0.2 and np.isnan(ci.low) and np.isnan(ci.high) and ci.n_groups == 0
    assert "no interval" in ci.notes[0] and "0 of the 3 groups" in ci.notes[0]
    with pytest.raises(ValueError, match="at least 2 groups, got 1"):
        bounded_interval(0.2, np.array([0.1]), 10, np.array([5]), METRIC_BOUNDS["eer"])


def test_bounded_coverage_quick() -> None:
    """A few cells, fewer replications: coverage near 95 % (wide band: 150 runs)."""
    for metric, groups, p in (("accuracy", 10, 0.9), ("per", 10, 0.9), ("accuracy", 30, 0.5)):
        cell = bounded_coverage(metric, groups, p, reps=150, seed=3)
        assert 0.88 <= cell["coverage"] <= 0.995 and cell["outside"] == cell["zero_width"] == 0, (metric, groups, p, cell)


def bounded_coverage_table(reps: dict[str, int], seed: int = 11) -> dict[tuple[str, int, float], dict[str, float]]:
    """(metric, groups, p) -> coverage cell, over accuracy/EER/PER x 5/10/30 groups x p = 0.5/0.9/0.98 (EER = PER = 1-p)."""
    return {(metric, groups, p): bounded_coverage(metric, groups, p, reps[metric], seed + 100 * groups + int(1000 * p))
            for metric in ("accuracy", "eer", "per") for groups in (5, 10, 30) for p in (0.5, 0.9, 0.98)}


#: runs per cell: accuracy and PER are cheap; EER recomputes every leave-one-out EER (about 2 of the 3 minutes)
COVERAGE_RUNS = {"accuracy": 4000, "per": 2000, "eer": 1000}


@pytest.mark.slow
def test_bounded_coverage_table() -> None:
    """The closing note's table (run with -m slow -s): every cell's 95 % interval covers 92-97 % and never leaves the range.

    Monte Carlo SE of a cell: 0.3 (4000 runs), 0.5 (2000) and 0.7 (1000) points; the cells sit 0.6-1.2 points inside the band (seed 12 gives the same: 92.7-96.4 %).
    """
    table = bounded_coverage_table(COVERAGE_RUNS)
    print("\nmetric    groups     p  runs  coverage  MC-SE  outside  zero-width  (95 % intervals)")
    for (metric, groups, p), cell in table.items():
        n = COVERAGE_RUNS[metric]
        mc = np.sqrt(cell["coverage"] * (1 - cell["coverage"]) / n)
        print(f"{metric:9s} {groups:6d} {p:5.2f} {n:5d} {cell['coverage']:9.3f} {mc:6.3f} {cell['outside']:8.3f} {cell['zero_width']:11.3f}")
    for key, cell in table.items():
        assert cell["outside"] == cell["zero_width"] == cell["estimate_outside"] == 0, (key, cell)
        assert 0.92 <= cell["coverage"] <= 0.97, (key, cell)


def test_eer_interval_not_conservative_at_few_speakers() -> None:
    """The defect: with t_{G-1} and the full binomial floor, EER 0.02 over 5 speakers covered 98 %; pair dof bring it to 95 %."""
    cell = bounded_coverage("eer", 5, 0.98, reps=400, seed=21)
    assert 0.92 <= cell["coverage"] <= 0.97 and cell["outside"] == cell["zero_width"] == 0, cell


def test_biased_cka_interval_stays_in_unit_range() -> None:
    """Biased CKA near 1 (nearly identical features, 6 speakers): estimate ± t SE passed 1; the library clips to [0, 1]."""
    from layerlab.cka.feature_stats import FeatureCKA
    from layerlab.cka.intervals import jackknife_cka

    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, M, D)) * rng.gamma(1.0, 1.0, size=(6, 1, 1))
    y = x @ np.diag(np.linspace(1.0, 1.3, D)) + rng.normal(0, 0.3, size=x.shape)
    shift = np.concatenate([x.reshape(-1, D).mean(0), y.reshape(-1, D).mean(0)])
    groups = []
    for g in range(6):
        acc = FeatureCKA([D], [D], mode="cross", shift=shift)
        acc.update([x[g], y[g]])
        groups.append(acc)
    est, loo = _jackknife(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = jackknife_interval(est, loo)
        lib = jackknife_cka(groups)
        debiased = jackknife_cka(groups, "debiased")
    assert plain.high > 1.0  # the defect
    assert 0.0 <= lib.low[0, 0] <= lib.estimate[0, 0] <= lib.high[0, 0] <= 1.0 and "clipped" in lib.method
    assert lib.low[0, 0] == pytest.approx(plain.low)
    assert "clipped" not in debiased.method


def test_accuracy_interval_covers_at_the_edge_with_many_speakers() -> None:
    """The defect: the logit jackknife covered 91.9 % at 30 speakers, accuracy 0.98 (skewed speakers); Wilson-deff 93 %."""
    cell = bounded_coverage("accuracy", 30, 0.98, reps=4000, seed=11 + 3000 + 980)
    assert 0.925 <= cell["coverage"] <= 0.97 and cell["outside"] == cell["zero_width"] == 0, cell

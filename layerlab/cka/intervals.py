"""Confidence intervals for CKA (and every measure of the state) from per-group states: leave-one-group-out jackknife.

Frames are temporally correlated, so resampling frames overstates certainty; whole groups are left
out instead. All states are additive sums, so "all groups but g" is a weighted sum of the groups'
states (weight 0 for g): no activation is read again. A percentile bootstrap with replacement was
used before and is gone: duplicated utterances inflate CKA, so its intervals sat above the estimate
(see layerlab.metrics.ci for the interval and its simulated coverage).

:func:`jackknife_matrices` runs any function of a merged state (one or several matrices, e.g. all
similarity measures at once, sharing their eigendecompositions) on the total and on every
leave-one-group-out state; :func:`bounded_matrix_interval` turns the replicates into intervals kept
inside a measure's range; :func:`jackknife_cka` is linear CKA's case.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from layerlab.cka.state_io import accumulator_from_state
from layerlab.metrics.ci import Interval, jackknife_interval

_ADDITIVE = {
    "feature_cka": ("n", "S", "rho", "R", "V", "M", "G"),
    "minibatch_cka": ("h_xy", "h_xx", "h_yy", "num_batches"),
}


def group_states(parts: Sequence[Any]) -> list[dict[str, Any]]:
    states = []
    for p in parts:
        if isinstance(p, dict):
            states.append(p)
            continue
        if hasattr(p, "flush"):
            p = accumulator_from_state(p.state_dict())
            p.flush()  # a minibatch state's buffered frames become batches of that group
        states.append(p.state_dict())
    kinds = {s["kind"] for s in states}
    if len(kinds) != 1:
        raise ValueError(f"parts: all groups must hold the same kind of CKA state, got {sorted(kinds)}")
    if states[0]["kind"] == "feature_cka":
        shifts = [s["shift"] for s in states if s["n"] > 0]
        if any(not np.array_equal(shifts[0], s) for s in shifts[1:]):
            raise ValueError("parts: group states were accumulated around different shifts; use one shared shift")
    return states


def weighted_state(states: list[dict[str, Any]], weights: np.ndarray) -> dict[str, Any]:
    base = dict(next(s for s, w in zip(states, weights) if w > 0))
    for key in _ADDITIVE[base["kind"]]:
        if isinstance(base[key], (list, tuple)):  # per-layer blocks (G, packed block rows)
            base[key] = [sum(w * np.asarray(s[key][i]) for s, w in zip(states, weights) if w > 0) for i in range(len(base[key]))]
        else:
            base[key] = sum(w * np.asarray(s[key]) for s, w in zip(states, weights) if w > 0)
    if base["kind"] == "feature_cka":
        base["n"] = int(base["n"])
        if base["shift"] is None:
            base["shift"] = next(s["shift"] for s in states if s["shift"] is not None)
    else:
        base["num_batches"] = int(base["num_batches"])
    return base


def _compute(state: dict[str, Any], estimator: str) -> np.ndarray:
    return accumulator_from_state(state, estimator=estimator).compute()


def jackknife_cka(parts: Sequence[Any], estimator: str = "biased", confidence: float = 0.95,
                  *, return_replicates: bool = False) -> Interval | tuple[Interval, np.ndarray]:
    """Leave-one-group-out jackknife interval of every CKA entry; ``parts`` holds one accumulator (or state) per group.

    ``return_replicates``: also the leave-one-group-out matrices, ``[G, L, L]`` in ``parts`` order (paired
    differences of CKA blocks on the same groups, ``layerlab.metrics.ci.paired_difference``).
    Biased linear CKA lies in [0, 1]: its interval is clipped to [0, 1] (clipping, not a transform, keeps the
    simulated coverage of tests/metrics/test_ci_coverage.py: the population value lies in [0, 1], so a clipped
    interval covers it whenever the unclipped one does). Debiased CKA can be negative: its interval is not clipped.
    """
    if estimator == "minibatch":
        raise ValueError("confidence interval: only for the biased and debiased estimators")
    point, loo = jackknife_matrices(parts, lambda state: _compute(state, estimator))
    iv = bounded_matrix_interval(point, loo, (0.0, 1.0) if estimator == "biased" else None, confidence)
    return (iv, loo) if return_replicates else iv


def jackknife_matrices(parts: Sequence[Any], compute: Callable[[dict[str, Any]], Any]) -> tuple[Any, Any]:
    """``compute`` on the merged state of all groups and on each leave-one-group-out state: ``(point, replicates)``.

    ``compute`` returns an array (replicates: ``[G, ...]`` in ``parts`` order) or a dict of arrays (replicates:
    a dict of ``[G, ...]`` stacks), so several measures share one state and its decompositions.
    """
    if len(parts) < 2:
        raise ValueError(f"confidence interval: needs at least 2 groups, got {len(parts)}")
    states = group_states(parts)
    total = weighted_state(states, np.ones(len(states)))
    point = compute(total)
    loo = [compute(without(total, s)) for s in states]
    if isinstance(point, dict):
        return point, {k: np.stack([r[k] for r in loo]) for k in point}
    return point, np.stack(loo)


def bounded_matrix_interval(point: np.ndarray, replicates: np.ndarray, bounds: tuple[float, float] | None,
                            confidence: float = 0.95) -> Interval:
    """Jackknife interval of every entry, clipped to the measure's range ``bounds`` (None: unbounded).

    Clipping, not a transform, keeps the simulated coverage of tests/metrics/test_ci_coverage.py: the population
    value lies in the range, so a clipped interval covers it whenever the unclipped one does.
    """
    iv = jackknife_interval(point, replicates, confidence)
    if bounds is None:
        return iv
    lo, hi = bounds
    low, high = np.clip(iv.low, lo, hi), np.clip(iv.high, lo, hi)
    rng = f"[{lo:g}, {hi:g}]" if np.isfinite(lo) else f"(-inf, {hi:g}]"
    return replace(iv, low=low, high=high, method=f"{iv.method}, clipped to {rng}")


def without(total: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """All groups but one: the total minus that group's additive sums (one pass per group, not a re-sum of all)."""
    if state.get("n", 1) == 0 or state.get("num_batches", 1) == 0:
        return total
    out = dict(total)
    for key in _ADDITIVE[total["kind"]]:
        if isinstance(total[key], (list, tuple)):
            out[key] = [np.asarray(t) - np.asarray(g) for t, g in zip(total[key], state[key])]
        else:
            out[key] = np.asarray(total[key]) - np.asarray(state[key])
    if total["kind"] == "feature_cka":
        out["n"] = int(out["n"])
    else:
        out["num_batches"] = int(out["num_batches"])
    return out

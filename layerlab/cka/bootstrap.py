"""Bootstrap confidence intervals for CKA from per-group states (utterances, speakers or shards).

Frames are temporally correlated, so resampling frames overstates certainty; we resample whole
groups with replacement. All states are additive sums, so a resample is a weighted sum of the
groups' states (weight = how often a group was drawn): no activation is read again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from layerlab.cka.state_io import accumulator_from_state

_ADDITIVE = {
    "feature_cka": ("n", "S", "rho", "R", "V", "M", "G"),
    "minibatch_cka": ("h_xy", "h_xx", "h_yy", "num_batches"),
}


@dataclass
class BootstrapResult:
    """Point estimate on all groups, percentile interval and the resampled matrices."""

    point: np.ndarray
    low: np.ndarray
    high: np.ndarray
    samples: np.ndarray
    confidence: float


def _group_states(parts: Sequence[Any]) -> list[dict[str, Any]]:
    states = []
    for p in parts:
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


def _weighted_state(states: list[dict[str, Any]], weights: np.ndarray) -> dict[str, Any]:
    base = dict(next(s for s, w in zip(states, weights) if w > 0))
    for key in _ADDITIVE[base["kind"]]:
        if key == "G":
            base[key] = [sum(w * s[key][i] for s, w in zip(states, weights) if w > 0) for i in range(len(base[key]))]
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
    acc = accumulator_from_state(state)
    return acc.compute() if state["kind"] == "minibatch_cka" else acc.compute(estimator)


def bootstrap_cka(parts: Sequence[Any], num_resamples: int = 200, estimator: str = "biased", confidence: float = 0.95, seed: int = 0) -> BootstrapResult:
    """Percentile bootstrap over groups: ``parts`` holds one CKA accumulator per utterance/speaker/shard."""
    if len(parts) < 2:
        raise ValueError(f"parts: bootstrap needs at least 2 groups, got {len(parts)}")
    if not 0 < confidence < 1 or num_resamples < 1:
        raise ValueError(f"confidence must be in (0, 1) and num_resamples >= 1, got {confidence}, {num_resamples}")
    states = _group_states(parts)
    rng = np.random.default_rng(seed)
    point = _compute(_weighted_state(states, np.ones(len(states))), estimator)
    samples = np.stack([_compute(_weighted_state(states, rng.multinomial(len(states), np.full(len(states), 1 / len(states)))), estimator) for _ in range(num_resamples)])
    tail = (1 - confidence) / 2 * 100
    low, high = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
    return BootstrapResult(point, low, high, samples, confidence)

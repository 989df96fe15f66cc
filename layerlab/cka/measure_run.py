"""Every requested measure of one CKA job: point matrices, notes, settings and leave-one-group-out intervals.

Second-moment measures come from the merged state (all at once, sharing each layer's
eigendecomposition) and their intervals from the same leave-one-group-out states as CKA
(:func:`layerlab.cka.intervals.jackknife_matrices`); ``ridge_r2`` from the per-group states
(:mod:`layerlab.cka.predictivity`); the sample measures from the job's speaker-balanced sample
(:mod:`layerlab.cka.sample_measures`). Intervals are clipped to each measure's range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from layerlab.cka.measure_registry import MEASURES, MeasureOptions, moment_names, sample_names
from layerlab.metrics.ci import Interval


@dataclass
class MeasureResult:
    """One measure's matrix over the state's layout (``FeatureCKA.compute``), with notes, settings and interval."""

    name: str
    values: np.ndarray
    notes: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    ci: Interval | None = None
    replicates: np.ndarray | None = None  # [G, rows, cols] in the order of the groups
    groups: list[str] | None = None  # the replicates' groups when they are not the state's (sample measures)


def _bounds(name: str, estimator: str) -> tuple[float, float] | None:
    if name == "linear_cka" and estimator == "debiased":
        return None  # debiased CKA can be negative
    spec = MEASURES[name]
    return spec.low, spec.high


def _interval(name: str, values: np.ndarray, reps: np.ndarray, estimator: str) -> Interval:
    import warnings

    from layerlab.cka.intervals import bounded_matrix_interval

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN entries (constant layers) stay NaN
        return bounded_matrix_interval(values, reps, _bounds(name, estimator))


def compute_measures(merged: Any, measures: Sequence[str], options: MeasureOptions, estimator: str, *,
                     groups: Sequence[Any] | None = None, intervals: bool = False, names: Sequence[str] | None = None,
                     sample: Any = None, device: str | None = None, progress: Callable[[str], None] | None = None) -> dict[str, MeasureResult]:
    """All ``measures`` of one job. ``groups``: one state per group (intervals; ``ridge_r2`` folds); ``sample``: a
    :class:`~layerlab.cka.sample_measures.Sample` (``rbf_cka``, ``mutual_knn``).

    On CPU everything runs with one torch thread (:func:`layerlab.cka.linalg.single_threaded`): the work is many
    small decompositions and products, where a thread pool only adds wake-up latency (measured 10-100x on shared cores).
    """
    import torch

    from layerlab.cka.linalg import single_threaded

    where = getattr(merged, "device", None) or torch.device("cpu")
    with single_threaded(torch.device(where)):
        return _compute_measures(merged, measures, options, estimator, groups=groups, intervals=intervals, names=names,
                                 sample=sample, device=device, progress=progress)


def _compute_measures(merged: Any, measures: Sequence[str], options: MeasureOptions, estimator: str, *,
                      groups: Sequence[Any] | None, intervals: bool, names: Sequence[str] | None,
                      sample: Any, device: str | None, progress: Callable[[str], None] | None) -> dict[str, MeasureResult]:
    from layerlab.cka.moment_measures import moment_matrices

    out: dict[str, MeasureResult] = {}
    moment = [m for m in moment_names(measures) if m != "ridge_r2"]
    if estimator == "minibatch" and moment:  # a minibatch state holds HSIC sums only: linear CKA is all it gives
        values = merged.compute()
        out["linear_cka"] = MeasureResult("linear_cka", values, np.full(values.shape, "", dtype=object), {"estimator": "minibatch"})
        moment = []
    if moment:
        if progress and moment != ["linear_cka"]:
            progress(f"measures {', '.join(moment)}: all layer pairs from the merged state")
        point = moment_matrices(merged, moment, options, estimator, names)
        for m, mat in point.items():
            out[m] = MeasureResult(m, mat.values, mat.notes, mat.info)
        if intervals:
            from layerlab.cka.intervals import jackknife_matrices

            if progress and moment != ["linear_cka"]:
                progress(f"measures: leave-one-group-out states of {len(groups or [])} groups")
            _, reps = jackknife_matrices(list(groups or []), lambda st: {m: v.values for m, v in moment_matrices(st, moment, options, estimator, names).items()})
            for m in moment:
                out[m].replicates = reps[m]
                out[m].ci = _interval(m, out[m].values, reps[m], estimator)
    if "ridge_r2" in measures:
        from layerlab.cka.predictivity import ridge_r2_matrix

        if progress:
            progress(f"ridge_r2: held-out predictivity, {min(options.ridge_folds, len(groups or []))} folds of whole groups")
        mat, reps = ridge_r2_matrix(merged, list(groups or []), options, names)
        res = MeasureResult("ridge_r2", mat.values, mat.notes, mat.info)
        if intervals and reps is not None:
            res.replicates, res.ci = reps, _interval("ridge_r2", mat.values, reps, estimator)
            res.ci = Interval(res.ci.estimate, res.ci.low, res.ci.high, res.ci.se, res.ci.n_groups, res.ci.confidence,
                              res.ci.method + " over each group's held-out error, fitted maps fixed", res.ci.notes)
        out["ridge_r2"] = res
    wanted = sample_names(measures)
    if wanted:
        from layerlab.cka.sample_measures import sample_matrices

        if sample is None:
            raise ValueError(f"--measure {wanted[0]}: needs a sample of the items, and none was collected")
        out.update(sample_matrices(sample, wanted, options, intervals=intervals, device=device, progress=progress))
    return {m: out[m] for m in measures}

"""Leave-one-fold-out probes (SUPERB ER: IEMOCAP's 5 sessions): each fold is test in turn; results per fold and their mean.

``run_probe`` hands a task whose dataset gives folds (and no ``test_fold``) to :func:`run_folds`: every fold
runs as a complete probe (sweep, per-layer probes, dev early stopping; dev derived from the other folds)
under ``<out>/folds/<fold>/``, and ``<out>/`` gets the combined tables.

Metric rows (``metrics.parquet``): split ``test`` / ``dev`` is the **mean over folds** of each fold's metric
(SUPERB's ER number), with an interval from the pooled units of all folds (leaving a speaker out removes it
from whichever folds hold it, then the mean is retaken); split ``test:<fold>`` / ``dev:<fold>`` is fold
``<fold>`` alone, as its own run reported it. Readers that look at ``test`` (the report, the figures) show
the mean. ``layer_weights.parquet`` is the mean over folds of each fold's weights and contributions.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from layerlab import storage
from layerlab.probe.config import ProbeConfig
from layerlab.probe.evaluation import Evaluation

#: run_one(config with test_fold set, output URL of the fold, list collecting (probe, split, Evaluation)) -> summary
RunOne = Callable[[ProbeConfig, str, list], dict[str, Any]]


def fold_split(split: str, fold: str) -> str:
    """The ``split`` value of fold ``fold``'s own rows (``test:session1``); the plain split is the mean over folds."""
    return f"{split}:{fold}"


def fold_mean(evaluations: Sequence[Evaluation]) -> Evaluation:
    """The mean over folds of each metric, as one evaluation over the units of every fold (intervals over their groups).

    ``statistic(keep)`` recomputes each fold's metrics on its kept units and averages them; a fold left with no
    unit drops out of that replicate's mean. Group labels are shared across folds, so leaving a speaker out
    removes it everywhere.
    """
    if not evaluations:
        raise ValueError("fold_mean needs at least one evaluation")
    names = list(evaluations[0].metrics)
    sizes = [len(ev.groups) if ev.groups is not None else int(ev.n) for ev in evaluations]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    metrics = {m: float(np.mean([ev.metrics[m] for ev in evaluations])) for m in names}
    complete = all(ev.statistic is not None and ev.groups is not None for ev in evaluations)

    def statistic(keep: np.ndarray) -> dict[str, float]:
        per = [ev.statistic(keep[bounds[i] : bounds[i + 1]]) for i, ev in enumerate(evaluations)  # type: ignore[misc]
               if keep[bounds[i] : bounds[i + 1]].any()]
        return {m: float(np.mean([p[m] for p in per])) if per else float("nan") for m in names}

    groupings = sorted({ev.grouping for ev in evaluations})
    return dataclasses.replace(
        evaluations[0], metrics=metrics, n=int(sum(ev.n for ev in evaluations)),
        statistic=statistic if complete else None,
        groups=[g for ev in evaluations for g in ev.groups] if complete else None,  # type: ignore[union-attr]
        grouping=groupings[0] if len(groupings) == 1 else "+".join(groupings), extra={})


def _fold_dir(fold: str) -> str:
    """A folder name for a fold label read from the dataset: never '.', '..' or hidden (labels are data, not trusted)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", fold)[:128]
    return "_" + name[1:] if name.startswith(".") else (name or "_")


def _read(url: str) -> pd.DataFrame | None:
    if not storage.exists(url):
        return None
    with storage.open_input(url) as f:
        return pd.read_parquet(f)


def _convergence(summaries: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Per probe: stopped by the epoch cap when any fold was, with each fold's entry."""
    per = [s.get("convergence") for s in summaries.values()]
    if not per or any(not isinstance(c, dict) for c in per):
        return None
    out: dict[str, Any] = {}
    for probe in per[0]:
        entries = {f: s["convergence"][probe] for f, s in summaries.items() if probe in s["convergence"]}
        capped = any(e.get("stopped_by") == "max_epochs" for e in entries.values())
        out[probe] = {"stopped_by": "max_epochs" if capped else "patience",
                      "epochs": max(int(e.get("epochs", 0)) for e in entries.values()),
                      "best_epoch": max(int(e.get("best_epoch", 0)) for e in entries.values()),
                      "max_epochs": max(int(e.get("max_epochs", 0)) for e in entries.values()), "folds": entries}
    return out


def run_folds(folds: list[str], cfg: ProbeConfig, out: str, run_one: RunOne, *, model: str, task: str,
              directions: dict[str, bool]) -> dict[str, Any]:
    """Run every fold as test with ``run_one``; write per-fold outputs under ``out/folds/`` and the combined tables in ``out``."""
    from layerlab.probe.api import _write
    from layerlab.probe.results import WEIGHTED, metric_rows

    start = time.perf_counter()
    out = str(out).rstrip("/")
    summaries: dict[str, dict[str, Any]] = {}
    evaluations: dict[str, list[tuple[str, str, Evaluation]]] = {}
    fold_rows, trials, weights = [], [], []
    for fold in folds:
        fold_out = storage.join(out, "folds", _fold_dir(fold))
        collected: list[tuple[str, str, Evaluation]] = []
        summaries[fold] = run_one(cfg.model_copy(update={"test_fold": fold}), fold_out, collected)
        evaluations[fold] = collected
        metrics = _read(storage.join(fold_out, "metrics.parquet"))
        if metrics is not None:
            fold_rows.append(metrics.assign(split=[fold_split(s, fold) for s in metrics["split"]]))
        fold_trials = _read(storage.join(fold_out, "trials.parquet"))
        if fold_trials is not None:
            trials.append(fold_trials.assign(fold=fold))
        fold_weights = _read(storage.join(fold_out, "layer_weights.parquet"))
        if fold_weights is not None:
            weights.append(fold_weights)
    confidence = cfg.ci_level if cfg.intervals else None
    keys = [(p, s) for p, s, _ in evaluations[folds[0]]]
    combined: list[dict[str, Any]] = []
    for probe, split in keys:
        evs = [next(ev for p, s, ev in evaluations[f] if (p, s) == (probe, split)) for f in folds]
        combined += metric_rows(model, task, probe, split, fold_mean(evs), directions, confidence)
    per_fold = pd.concat(fold_rows, ignore_index=True) if fold_rows else pd.DataFrame()
    evaluated = {p for p, _ in keys}
    for probe in [p for p in dict.fromkeys(per_fold.get("probe", [])) if p not in evaluated]:
        combined += [{**r, "probe": probe} for r in combined if r["probe"] == WEIGHTED]  # single-layer model: same probe
    rows = combined + per_fold.to_dict("records")
    weight_mean: list[dict[str, Any]] = []
    if weights:
        w = pd.concat(weights, ignore_index=True)
        numeric = [c for c in w.columns if c not in ("model", "task", "layer")]
        weight_mean = w.groupby(["model", "task", "layer"], sort=False)[numeric].mean().reset_index().to_dict("records")
    first = summaries[folds[0]]
    summary: dict[str, Any] = {k: first[k] for k in ("model", "cache", "task", "layers", "seed", "runner", "weighted_layers") if k in first}
    summary["config"] = {**first.get("config", {}), "test_fold": None}
    summary["folds"] = list(folds)
    summary["fold_outputs"] = {f: f"folds/{_fold_dir(f)}" for f in folds}
    notes = [n for s in summaries.values() for n in (s.get("task_info") or {}).get("notes", [])]
    summary["task_info"] = {"rule": f"leave-one-fold-out: each of {len(folds)} folds as test in turn; split 'test' is the mean "
                                     "over folds, 'test:<fold>' each fold", "notes": list(dict.fromkeys(notes)),
                            "folds": {f: s.get("task_info") for f, s in summaries.items()}}
    summary["best"] = {f: s.get("best") for f, s in summaries.items()}
    convergence = _convergence(summaries)
    if convergence is not None:
        summary["convergence"] = convergence
    if all(isinstance(s.get("speakers"), dict) for s in summaries.values()):
        summary["speakers"] = {k: sorted({x for s in summaries.values() for x in s["speakers"].get(k, [])}) for k in ("train", "dev", "test")}
        summary["test_speakers"] = summary["speakers"]["test"]
    summary.update(_write(out, rows, pd.concat(trials, ignore_index=True).to_dict("records") if trials else [], weight_mean))
    summary["test"] = {f"{r['probe']}/{r['metric']}": r["value"] for r in combined if r["split"] == "test"}
    summary["wall_seconds"] = round(time.perf_counter() - start, 2)
    storage.write_json(storage.join(out, "summary.json"), summary)
    return summary

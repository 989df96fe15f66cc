"""Probe results as tidy tables: metrics (with jackknife intervals), trials, layer weights; written as Parquet."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd

from layerlab import storage
from layerlab.probe.evaluation import Evaluation

METRIC_COLUMNS = ["model", "task", "probe", "split", "metric", "value", "ci_low", "ci_high", "n", "higher_is_better",
                  "n_groups", "grouping", "ci_method", "note"]
#: leave-one-group-out replicates (``replicates.parquet``): the metric recomputed without each group, natural scale
REPLICATE_COLUMNS = ["model", "task", "probe", "split", "metric", "group", "value"]
WEIGHT_COLUMNS = ["model", "task", "layer", "weight", "contribution", "normalized_weight"]
WEIGHTED = "weighted_sum"


def higher_is_better(metric: str, directions: dict[str, bool]) -> bool:
    """Direction of ``metric``: declared, or by family (accuracy* up; eer, min_dcf, per, wer down)."""
    if metric in directions:
        return directions[metric]
    return metric.startswith("accuracy")


def metric_rows(model: str, task: str, probe: str, split: str, ev: Evaluation, directions: dict[str, bool],
                confidence: float | None) -> list[dict[str, Any]]:
    """One row per metric of one evaluation, with bounded leave-one-group-out intervals (None: no intervals).

    Each row also carries ``"replicates"`` ({group: leave-one-out value}, not a metrics column): ``replicate_rows``
    turns a list of such rows into the replicates table.
    """
    rows = []
    ci = ev.intervals(confidence) if confidence else {}
    for m, v in ev.metrics.items():
        iv = ci.get(m)
        rows.append({"model": model, "task": task, "probe": probe, "split": split, "metric": m, "value": float(v),
                     "ci_low": iv.low if iv else float("nan"), "ci_high": iv.high if iv else float("nan"), "n": int(ev.n),
                     "higher_is_better": higher_is_better(m, directions), "n_groups": iv.n_groups if iv else 0,
                     "grouping": iv.grouping if iv else ev.group_label(), "ci_method": iv.method if iv else "",
                     "note": iv.note if iv else "", "replicates": dict(iv.replicates) if iv else {}})
    return rows


def replicate_rows(metric_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The replicates table (``REPLICATE_COLUMNS``): one row per metric row and left-out group."""
    keys = ("model", "task", "probe", "split", "metric")
    return [{**{k: r[k] for k in keys}, "group": str(g), "value": float(v)}
            for r in metric_rows for g, v in (r.get("replicates") or {}).items()]


def weight_rows(model: str, task: str, layers: list[str], raw: Any, contribution: Any) -> list[dict[str, Any]]:
    """Learned ``softmax(w)`` and contribution share per layer (``normalized_weight`` repeats the share for old readers)."""
    return [{"model": model, "task": task, "layer": n, "weight": float(r), "contribution": float(c), "normalized_weight": float(c)}
            for n, r, c in zip(layers, raw, contribution)]


def write_parquet(df: pd.DataFrame, url: str) -> None:
    """Atomically write a DataFrame as Parquet to any fsspec URL."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    storage.atomic_write_bytes(url, buf.getvalue())


def read_metrics(url: str) -> pd.DataFrame:
    """``metrics.parquet`` of a probe output folder (or of several, concatenated by the caller)."""
    with storage.open_input(storage.join(url, "metrics.parquet")) as f:
        return pd.read_parquet(f)

"""The model x task table (the paper's Table 1): weighted-sum probe metrics with CIs, best per task."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from layerlab.report.load import WEIGHTED

#: The metric that ranks models for a task (the first listed that the results contain).
PRIMARY_METRICS: dict[str, tuple[str, ...]] = {
    "pr": ("per", "error_rate"), "asr": ("wer", "error_rate"), "asv": ("eer",),
    "sid": ("accuracy", "acc"), "ks": ("accuracy", "acc"), "ic": ("accuracy", "acc"),
    "er": ("accuracy", "acc"), "style": ("accuracy", "acc"), "pr-frame": ("frame_accuracy",), "asv-cosine": ("eer",),
}
#: Metrics that are fractions and are shown in percent, as SUPERB reports them.
PERCENT_METRICS = {"per", "wer", "cer", "eer", "accuracy", "acc", "error_rate", "frame_accuracy"}
TASK_ORDER = ("pr", "pr-frame", "asr", "ks", "ic", "sid", "asv", "asv-cosine", "er", "style")


def primary_metric(metrics: pd.DataFrame, task: str) -> str | None:
    """The metric that ranks models on ``task`` (known preference, else the first the task reports)."""
    have = list(dict.fromkeys(metrics.loc[metrics["task"] == task, "metric"].str.lower()))
    for m in PRIMARY_METRICS.get(task, ()):
        if m in have:
            return m
    return have[0] if have else None


def ordered_tasks(tasks: list[str]) -> list[str]:
    return sorted(set(tasks), key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else len(TASK_ORDER), t))


def model_task_table(metrics: pd.DataFrame, models: dict[str, Any]) -> pd.DataFrame:
    """Long table: model, task, metric, split, value, ci_low, ci_high, higher_is_better, best (per task and split)."""
    if metrics.empty:
        return pd.DataFrame(columns=["model", "task", "metric", "split", "value", "ci_low", "ci_high", "higher_is_better", "best"])
    m = metrics[metrics["probe"] == WEIGHTED].copy()
    m["metric"] = m["metric"].str.lower()
    rows = []
    for task in ordered_tasks(list(m["task"])):
        metric = primary_metric(m, task)
        sub = m[(m["task"] == task) & (m["metric"] == metric)]
        for split, part in sub.groupby("split"):
            part = part.drop_duplicates("model", keep="last")
            hib = bool(part["higher_is_better"].iloc[0])
            best = part["value"].max() if hib else part["value"].min()
            for _, r in part.iterrows():
                rows.append({"model": r["model"], "task": task, "metric": metric, "split": split, "value": float(r["value"]),
                             "ci_low": float(r["ci_low"]), "ci_high": float(r["ci_high"]), "higher_is_better": hib,
                             "best": bool(r["value"] == best)})
    out = pd.DataFrame(rows)
    order = {name: i for i, name in enumerate(sorted(models, key=lambda n: (not models[n].get("baseline"), list(models).index(n))))}
    return out.sort_values(["model", "task"], key=lambda s: s.map(order) if s.name == "model" else s).reset_index(drop=True)


def fmt(value: float, metric: str) -> str:
    """A metric value as shown (percent for fractions)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}" if metric in PERCENT_METRICS else f"{value:.3f}"


def metric_header(task: str, metric: str, higher: bool) -> str:
    unit = " %" if metric in PERCENT_METRICS else ""
    return f"{task.upper()}<br><small>{metric.upper()}{unit} {'↑' if higher else '↓'}</small>"

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


TABLE_COLUMNS = ["model", "task", "metric", "split", "value", "ci_low", "ci_high", "higher_is_better", "best", "n_groups", "ci_method", "note"]


def group_note(row: Any) -> str:
    """The row's own note, or one saying that fewer than MIN_GROUPS groups stand behind its interval."""
    from layerlab.metrics.ci import MIN_GROUPS

    note = str(row.get("note", "") or "")
    g = int(row.get("n_groups", 0) or 0)
    if not note and 0 < g < MIN_GROUPS:
        note = f"only {g} {row.get('grouping') or 'groups'} (fewer than {MIN_GROUPS}): interval coverage not established"
    return note


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
    """Long table: model, task, metric, split, value, ci_low, ci_high, higher_is_better, best, n_groups, ci_method, note."""
    if metrics.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
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
                             "best": bool(r["value"] == best), "n_groups": int(r.get("n_groups", 0) or 0),
                             "ci_method": str(r.get("ci_method", "") or ""), "note": group_note(r)})
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


def weighted_vs_best_layer(metrics: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per model x task: the best single layer chosen on dev, its ``split`` value and CI, and the weighted sum's.

    ``worse`` is True where the weighted sum is worse than that layer beyond the layer's interval
    (below its ci_low when higher is better, above its ci_high otherwise).
    """
    cols = ["model", "task", "metric", "best_layer", "layer_value", "layer_ci_low", "layer_ci_high", "weighted_value", "worse"]
    if metrics.empty:
        return pd.DataFrame(columns=cols)
    m = metrics.copy()
    m["metric"] = m["metric"].str.lower()
    rows = []
    for (model, task), g in m.groupby(["model", "task"], sort=False):
        metric = primary_metric(g, task)
        g = g[g["metric"] == metric]
        dev = g[(g["split"] == "dev") & (g["probe"] != WEIGHTED)].drop_duplicates("probe", keep="last").set_index("probe")
        test = g[g["split"] == split].drop_duplicates("probe", keep="last").set_index("probe")
        if dev.empty or WEIGHTED not in test.index:
            continue
        hib = bool(g["higher_is_better"].iloc[0])
        dev = dev[dev.index.isin(test.index)]
        if dev.empty:
            continue
        best = dev["value"].idxmax() if hib else dev["value"].idxmin()
        lay, ws = test.loc[best], float(test.loc[WEIGHTED, "value"])
        worse = ws < float(lay["ci_low"]) if hib else ws > float(lay["ci_high"])
        rows.append({"model": model, "task": task, "metric": metric, "best_layer": best, "layer_value": float(lay["value"]),
                     "layer_ci_low": float(lay["ci_low"]), "layer_ci_high": float(lay["ci_high"]), "weighted_value": ws, "worse": bool(worse)})
    return pd.DataFrame(rows, columns=cols)


def selectivity(metrics: pd.DataFrame, models: dict[str, Any], split: str = "test") -> pd.DataFrame:
    """Per-layer probe result minus its random-initialisation control's on the same layer (model info ``control_of``).

    Positive = better than the control (sign follows the metric's direction).
    """
    cols = ["model", "control", "task", "metric", "layer", "value", "control_value", "selectivity"]
    rows = []
    if metrics.empty:
        return pd.DataFrame(columns=cols)
    m = metrics[(metrics["split"] == split) & (metrics["probe"] != WEIGHTED)].copy()
    m["metric"] = m["metric"].str.lower()
    for control, info in models.items():
        target = info.get("control_of")
        if not target:
            continue
        for task in ordered_tasks(list(m.loc[m["model"] == target, "task"])):
            metric = primary_metric(m[m["task"] == task], task)
            sel = m[(m["task"] == task) & (m["metric"] == metric)]
            a = sel[sel["model"] == target].drop_duplicates("probe", keep="last").set_index("probe")
            c = sel[sel["model"] == control].drop_duplicates("probe", keep="last").set_index("probe")
            if a.empty or c.empty:
                continue
            sign = 1.0 if bool(a["higher_is_better"].iloc[0]) else -1.0
            for layer in [n for n in models.get(target, {}).get("layers", []) or list(a.index) if n in a.index and n in c.index]:
                v, cv = float(a.loc[layer, "value"]), float(c.loc[layer, "value"])
                rows.append({"model": target, "control": control, "task": task, "metric": metric, "layer": layer,
                             "value": v, "control_value": cv, "selectivity": sign * (v - cv)})
    return pd.DataFrame(rows, columns=cols)

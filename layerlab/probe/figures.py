"""Probe figures: learned layer weights per task (the paper's Figure 2) and per-layer profiles, layers named on the axes."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from layerlab import storage


def _save(fig: object, url: str) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    storage.atomic_write_bytes(url, buf.getvalue())


def _ordered_layers(df: pd.DataFrame, column: str) -> list[str]:
    return list(dict.fromkeys(df[column]))


def plot_layer_weights(weights: pd.DataFrame, url: str, column: str = "contribution") -> None:
    """One panel per model: layers on the x axis, one line per task (contribution share solid, softmax weight dotted)."""
    if column not in weights:
        column = "normalized_weight" if "normalized_weight" in weights else "weight"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = _ordered_layers(weights, "model")
    fig, axes = plt.subplots(1, len(models), figsize=(max(4.5, 0.55 * weights["layer"].nunique() + 3) * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        sub = weights[weights["model"] == model]
        layers = _ordered_layers(sub, "layer")
        x = np.arange(len(layers))
        for task, t in sub.groupby("task", sort=False):
            y = t.set_index("layer").reindex(layers)[column]
            ax.plot(x, y.to_numpy(), marker="o", label=str(task))
            if column != "weight":
                ax.plot(x, t.set_index("layer").reindex(layers)["weight"].to_numpy(), ls=":", color=ax.lines[-1].get_color(), alpha=0.6)
        ax.set_xticks(x, layers, rotation=45, ha="right")
        ax.set_xlabel("layer")
        ax.set_ylabel(f"{'contribution share' if column == 'contribution' else column} (solid), softmax weight (dotted)"
                      if column != "weight" else "softmax weight")
        ax.set_title(model)
        ax.legend(fontsize=8)
    _save(fig, url)


def plot_layer_profile(metrics: pd.DataFrame, url: str, split: str = "test") -> None:
    """Per-layer probe scores (primary metric per task) with intervals; the weighted-sum probe as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = metrics[metrics["split"] == split]
    panels = list(sub.groupby(["model", "task", "metric"], sort=False))
    panels = [p for p in panels if (p[1]["probe"] != "weighted_sum").any()]
    if not panels:
        panels = list(sub.groupby(["model", "task", "metric"], sort=False))
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5.0 * max(1, len(panels)), 3.6), squeeze=False)
    for ax, ((model, task, metric), g) in zip(axes[0], panels):
        per = g[g["probe"] != "weighted_sum"]
        x = np.arange(len(per))
        ax.errorbar(x, per["value"], yerr=[per["value"] - per["ci_low"].fillna(per["value"]), per["ci_high"].fillna(per["value"]) - per["value"]],
                    marker="o", capsize=3, label="single layer")
        ws = g[g["probe"] == "weighted_sum"]
        if len(ws):
            ax.axhline(float(ws["value"].iloc[0]), ls="--", color="k", label="weighted sum")
        ax.set_xticks(x, list(per["probe"]), rotation=45, ha="right")
        ax.set_xlabel("layer")
        ax.set_ylabel(f"{metric} ({split})")
        ax.set_title(f"{model} - {task}")
        ax.legend(fontsize=8)
    _save(fig, url)

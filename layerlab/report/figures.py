"""Report figures as PNG bytes: learned layer weights, per-layer probe profiles, CKA heat maps.

Every axis that runs over layers is labelled with the layers' names; all CKA maps share one colour
scale [0, 1] so maps of different models compare at a glance.
"""

from __future__ import annotations

import io
from typing import Any, Collection, Sequence

import numpy as np
import pandas as pd

from layerlab.report.findings import frame_layers
from layerlab.report.load import WEIGHTED, CKAMatrix
from layerlab.report.tables import PERCENT_METRICS, ordered_tasks, primary_metric


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _plt().close(fig)
    return buf.getvalue()


def _layer_axis(ax: Any, names: Sequence[str], axis: str = "x", max_labels: int = 30) -> None:
    """Tick labels = layer names (every k-th when there are many)."""
    step = max(1, -(-len(names) // max_labels))
    ticks = list(range(0, len(names), step))
    labels = [names[i] for i in ticks]
    if axis == "x":
        ax.set_xticks(ticks, labels, rotation=60, ha="right", fontsize=7)
    else:
        ax.set_yticks(ticks, labels, fontsize=7)


def weights_figure(weights: pd.DataFrame, model: str, label: str, layers: Sequence[str]) -> bytes:
    """Figure 2 for one model: each layer's contribution share of the weighted sum, and the raw softmax weights beside it.

    The contribution (CONTRACTS §3) accounts for activation norms, projections and layer norm; the
    raw softmax weight does not. Old tables without ``contribution`` get the raw panel and a note.
    """
    plt = _plt()
    sub = weights[weights["model"] == model]
    names = [n for n in layers if n in set(sub["layer"])] or list(dict.fromkeys(sub["layer"]))
    has_contribution = "contribution" in sub.columns and sub["contribution"].notna().any()
    width = max(4.5, 0.35 * len(names) + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * width, 3.6), squeeze=False, constrained_layout=True)
    share_ax, raw_ax = axes[0]
    for task in ordered_tasks(list(sub["task"])):
        t = sub[sub["task"] == task].drop_duplicates("layer", keep="last").set_index("layer")
        if has_contribution:
            share_ax.plot(range(len(names)), [t["contribution"].get(n, np.nan) for n in names], marker="o", ms=3, label=task.upper())
        raw_ax.plot(range(len(names)), [t["weight"].get(n, np.nan) for n in names], marker="o", ms=3, label=task.upper())
    for ax in (share_ax, raw_ax):
        _layer_axis(ax, names)
        ax.set_xlabel(f"{label} layer")
        ax.grid(alpha=0.3)
    share_ax.set_ylabel("contribution share of the weighted sum")
    share_ax.set_title(f"{label}: contribution share per layer", fontsize=10)
    if has_contribution:
        share_ax.legend(fontsize=7, ncol=2)
    else:
        share_ax.text(0.5, 0.5, "contribution not recorded\n(old layer_weights table)", ha="center", va="center", transform=share_ax.transAxes)
    raw_ax.set_ylabel("raw learned weight (softmax)")
    raw_ax.set_title(f"{label}: raw softmax weights", fontsize=10)
    raw_ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def profile_figure(metrics: pd.DataFrame, task: str, models: dict[str, Any], split: str, ci_label: str = "95% CI",
                   capped: Collection[tuple[str, str, str]] = ()) -> bytes:
    """Per-layer probe results for one task: one panel per model, CI band, weighted sum dashed, random-init control dotted with selectivity."""
    plt = _plt()
    m = metrics[(metrics["task"] == task) & (metrics["split"] == split)].copy()
    m["metric"] = m["metric"].str.lower()
    metric = primary_metric(m, task)
    m = m[m["metric"] == metric]
    has = {n for n in models if ((m["model"] == n) & (m["probe"] != WEIGHTED)).any()}
    names = [n for n in models if n in has and models[n].get("control_of") not in has]  # a control is drawn in its model's panel
    scale = 100.0 if metric in PERCENT_METRICS else 1.0
    cols = min(3, max(1, len(names)))
    rows = -(-len(names) // cols) if names else 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.1 * rows), squeeze=False, constrained_layout=True)
    for ax, name in zip(axes.ravel(), names):
        sub = m[m["model"] == name]
        per_layer = sub[sub["probe"] != WEIGHTED].drop_duplicates("probe", keep="last").set_index("probe")
        layers = [n for n in models[name].get("layers", []) if n in per_layer.index] or list(per_layer.index)
        x = np.arange(len(layers))
        y = per_layer.loc[layers, "value"].to_numpy(float) * scale
        frames, source = frame_layers(models[name], layers)
        fi = np.array([i for i, n in enumerate(layers) if n in frames], dtype=int)
        ui = np.array([i for i, n in enumerate(layers) if n not in frames], dtype=int)
        ax.plot(x[fi], y[fi], marker="o", ms=3, color="C0", label="one probe per frame-level layer" if source != "not recorded" else "one probe per layer (levels not recorded)")
        if len(ui):
            ax.plot(x[ui], y[ui], ls="none", marker="s", ms=4, color="0.5", label="utterance-level layer (not in the profile)")
        cap = [i for i, n in enumerate(layers) if (name, task, n) in capped]
        if cap:
            ax.plot(x[cap], y[cap], ls="none", marker="o", ms=8, mfc="none", mec="C3", label="stopped at the epoch cap")
        ax.fill_between(x[fi], per_layer.loc[layers, "ci_low"].to_numpy(float)[fi] * scale, per_layer.loc[layers, "ci_high"].to_numpy(float)[fi] * scale,
                        color="C0", alpha=0.2, label=ci_label)
        control = next((c for c, i in models.items() if i.get("control_of") == name), None)
        if control is not None:
            cl = m[(m["model"] == control) & (m["probe"] != WEIGHTED)].drop_duplicates("probe", keep="last").set_index("probe")
            cy = [float(cl["value"].get(n, np.nan)) * scale for n in layers]
            if np.isfinite(cy).any():
                ax.plot(x, cy, ls=":", marker="x", ms=3, color="0.4", label=f"random-init control ({models[control].get('label', control)})")
                sign = 1.0 if bool(per_layer["higher_is_better"].iloc[0]) else -1.0
                sel = sign * (y - np.asarray(cy))
                ax.text(0.02, 0.02, "selectivity: " + ", ".join(f"{n} {v:+.1f}" for n, v in zip(layers, sel) if np.isfinite(v))[:120],
                        transform=ax.transAxes, fontsize=6, va="bottom")
        ws = sub[sub["probe"] == WEIGHTED]
        if not ws.empty:
            ax.axhline(float(ws["value"].iloc[-1]) * scale, color="C3", ls="--", lw=1, label="weighted sum")
        _layer_axis(ax, layers)
        if len(ui) or cap:
            ax.legend(fontsize=6)
        ax.set_title(models[name].get("label", name), fontsize=10)
        ax.set_xlabel(f"{models[name].get('label', name)} layer")
        ax.set_ylabel(f"{task.upper()} {metric.upper()}{' %' if scale == 100 else ''} ({split})")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    if names:
        axes.ravel()[0].legend(fontsize=7)
    fig.suptitle(f"{task.upper()}: per-layer probes", fontsize=11)
    return _png(fig)


def cka_figure(maps: Sequence[CKAMatrix], models: dict[str, Any], title: str, columns: int = 3) -> bytes:
    """CKA heat maps sharing one colour scale [0, 1]; rows = model A layers, columns = model B layers, by name."""
    plt = _plt()
    cols = min(columns, len(maps))
    rows = -(-len(maps) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols + 0.8, 4.0 * rows), squeeze=False, constrained_layout=True)
    image = None
    for ax, mp in zip(axes.ravel(), maps):
        la, lb = models.get(mp.model_a, {}).get("label", mp.model_a), models.get(mp.model_b, {}).get("label", mp.model_b)
        image = ax.imshow(mp.value, origin="lower", cmap="magma", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
        _layer_axis(ax, mp.layers_b, "x", 16)
        _layer_axis(ax, mp.layers_a, "y", 16)
        ax.set_xlabel(f"{lb} layer")
        ax.set_ylabel(f"{la} layer")
        ax.set_title(f"{la}" + (f" vs {lb}" if mp.model_a != mp.model_b else "") + f" ({mp.level})", fontsize=9)
    for ax in axes.ravel()[len(maps):]:
        ax.axis("off")
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label=f"linear CKA ({maps[0].estimator})")
    fig.suptitle(title, fontsize=11)
    return _png(fig)

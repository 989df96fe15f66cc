"""The report's "what each layer encodes" panel: training-free profiles (`layerlab profile`) beside the SGD per-layer probes.

Per model, one line per reference (phone, phone span, speaker, keyword, intent, style) across the
model's layers: left, the closed-form held-out accuracy of the training-free profile (ridge chosen on
dev, test split, 95 % band); right, the SGD per-layer probe of the matching task (accuracy; PR as
1 − PER). Tables: ``encodes`` (one row per model, reference and layer, both sides) and
``encodes_agreement`` (per model and reference: Spearman ρ of the two profiles over layers, and the
best layer of each on the report's split). The findings read :func:`training_free_profiles` as a second line
of evidence. Reads result tables only.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from layerlab import storage
from layerlab.report.findings import Profile, frame_layers
from layerlab.report.load import WEIGHTED, read_parquet

#: the SGD probe task each reference mirrors (first one found in the study's metrics)
SGD_TASKS: dict[str, tuple[str, ...]] = {"phone": ("pr-frame", "pr"), "phone_span": ("pr", "pr-frame"), "word_span": ("asr",), "speaker": ("sid",),
                                         "keyword": ("ks",), "intent": ("ic",), "style": ("style", "er")}
#: the reference whose training-free profile the findings use (the phone content of frames)
PHONE = "phone"
PROFILE_TASK = "profile:phone"


def load_profiles(entries: Sequence[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All profile rows and replicates of the study (``model`` = the study's model name); empty frames when none ran."""
    tables, reps = [], []
    for e in entries:
        if e.get("table") and storage.exists(e["table"]):
            df = read_parquet(e["table"]).copy()
            df["model"], df["dataset"] = e["model"], e["dataset"]
            tables.append(df)
        if e.get("replicates") and storage.exists(e["replicates"]):
            r = read_parquet(e["replicates"]).copy()
            r["model"] = e["model"]
            r["group"] = r["group"].astype(str)
            reps.append(r)
    return (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(),
            pd.concat(reps, ignore_index=True) if reps else pd.DataFrame())


def _sgd(metrics: pd.DataFrame, model: str, reference: str, split: str) -> tuple[str, str, pd.DataFrame]:
    """(task, metric, per-layer rows with an accuracy-like ``score`` and its interval) of the SGD probe mirroring ``reference``."""
    empty = pd.DataFrame(columns=["probe", "score", "low", "high"])
    if metrics.empty:
        return "", "", empty
    for task in SGD_TASKS.get(reference, ()):
        m = metrics[(metrics["model"] == model) & (metrics["task"] == task) & (metrics["probe"] != WEIGHTED) & (metrics["split"] == split)]
        if m.empty:
            continue
        names = set(m["metric"].str.lower())
        metric = "per" if "per" in names else "frame_accuracy" if "frame_accuracy" in names else "accuracy" if "accuracy" in names else None
        if metric is None:
            continue
        m = m[m["metric"].str.lower() == metric].drop_duplicates("probe", keep="last")
        if metric == "per":  # 1 - PER: higher is better, like accuracy (an error rate above 1 shows as 0)
            return task, "1 − PER", pd.DataFrame({"probe": m["probe"], "score": np.clip(1 - m["value"], 0, 1),
                                                  "low": np.clip(1 - m["ci_high"], 0, 1), "high": np.clip(1 - m["ci_low"], 0, 1)})
        return task, metric, pd.DataFrame({"probe": m["probe"], "score": m["value"], "low": m["ci_low"], "high": m["ci_high"]})
    return "", "", empty


def encodes_table(profiles: pd.DataFrame, metrics: pd.DataFrame, models: dict[str, Any], split: str = "test") -> pd.DataFrame:
    """One row per model, reference and layer: the training-free measures and the SGD probe of the matching task."""
    cols = ["model", "reference", "layer", "layer_index", "accuracy", "accuracy_low", "accuracy_high", "chance", "cca_mean", "pnmi",
            "sgd_task", "sgd_metric", "sgd_value", "sgd_low", "sgd_high"]
    if profiles.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (model, ref), sub in profiles.groupby(["model", "reference"], sort=False):
        order = list(models.get(model, {}).get("layers") or []) or list(dict.fromkeys(sub.sort_values("layer_index")["layer"]))
        task, metric, sgd = _sgd(metrics, model, ref, split)
        sgd = sgd.set_index("probe")
        acc = sub[(sub["measure"] == "accuracy") & (sub["split"] == split)].set_index("layer")
        other = {m: sub[sub["measure"] == m].set_index("layer")["value"] for m in ("cca_mean", "pnmi")}
        for layer in [n for n in order if n in set(sub["layer"])]:
            rows.append({"model": model, "reference": ref, "layer": layer, "layer_index": order.index(layer),
                         "accuracy": acc["value"].get(layer, np.nan), "accuracy_low": acc["ci_low"].get(layer, np.nan),
                         "accuracy_high": acc["ci_high"].get(layer, np.nan), "chance": acc["chance"].get(layer, np.nan),
                         "cca_mean": other["cca_mean"].get(layer, np.nan), "pnmi": other["pnmi"].get(layer, np.nan),
                         "sgd_task": task, "sgd_metric": metric, "sgd_value": sgd["score"].get(layer, np.nan),
                         "sgd_low": sgd["low"].get(layer, np.nan), "sgd_high": sgd["high"].get(layer, np.nan)})
    return pd.DataFrame(rows, columns=cols)


def agreement_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per model and reference: Spearman ρ between the training-free accuracy and the SGD probe over the layers both have."""
    from scipy.stats import spearmanr

    cols = ["model", "reference", "sgd_task", "n_layers", "spearman", "best_training_free", "best_sgd"]
    rows = []
    for (model, ref), sub in table.groupby(["model", "reference"], sort=False):
        both = sub.dropna(subset=["accuracy", "sgd_value"])
        rho = float("nan")
        if len(both) >= 3 and both["accuracy"].nunique() > 1 and both["sgd_value"].nunique() > 1:
            rho = float(spearmanr(both["accuracy"], both["sgd_value"]).statistic)
        tf = sub.dropna(subset=["accuracy"])
        sg = sub.dropna(subset=["sgd_value"])
        rows.append({"model": model, "reference": ref, "sgd_task": str(sub["sgd_task"].iloc[0]), "n_layers": len(both), "spearman": rho,
                     "best_training_free": str(tf.loc[tf["accuracy"].idxmax(), "layer"]) if len(tf) else "",
                     "best_sgd": str(sg.loc[sg["sgd_value"].idxmax(), "layer"]) if len(sg) else ""})
    return pd.DataFrame(rows, columns=cols)


def encodes_figure(table: pd.DataFrame, model: str, label: str, layers: Sequence[str]) -> bytes:
    """Two panels over the model's layers (names on the x axis): training-free accuracy per reference, and the SGD probes beside it."""
    from layerlab.report.figures import _layer_axis, _plt, _png

    plt = _plt()
    sub = table[table["model"] == model]
    names = [n for n in layers if n in set(sub["layer"])] or list(dict.fromkeys(sub.sort_values("layer_index")["layer"]))
    pos = {n: i for i, n in enumerate(names)}
    width = max(4.5, 0.35 * len(names) + 2.8)
    fig, axes = plt.subplots(1, 2, figsize=(2 * width, 3.8), squeeze=False, constrained_layout=True, sharey=True)
    left, right = axes[0]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn: set[str] = set()  # an SGD task mirrored by two references (phone, phone_span: PR) is drawn once
    for k, (ref, part) in enumerate(sub.groupby("reference", sort=False)):
        colour = colours[k % len(colours)]
        tf = part.dropna(subset=["accuracy"])
        if len(tf):
            x = tf["layer"].map(pos).to_numpy()
            left.plot(x, tf["accuracy"], "-o", ms=3, color=colour, label=ref)
            if tf["accuracy_low"].notna().any():
                left.fill_between(x, tf["accuracy_low"], tf["accuracy_high"], color=colour, alpha=0.15, lw=0)
            if tf["chance"].notna().any():
                left.axhline(float(tf["chance"].mean()), color=colour, lw=0.6, ls=":")
        sg = part.dropna(subset=["sgd_value"])
        if len(sg) and sg["sgd_task"].iloc[0] not in drawn:
            drawn.add(sg["sgd_task"].iloc[0])
            ref = ", ".join(sub[sub["sgd_task"] == sg["sgd_task"].iloc[0]]["reference"].unique())
            x = sg["layer"].map(pos).to_numpy()
            right.plot(x, sg["sgd_value"], "--s", ms=3, color=colour, label=f"{ref}: {sg['sgd_task'].iloc[0].upper()} ({sg['sgd_metric'].iloc[0]})")
            if sg["sgd_low"].notna().any():
                right.fill_between(x, sg["sgd_low"], sg["sgd_high"], color=colour, alpha=0.12, lw=0)
    left.set_title(f"{label}: training-free (closed-form held-out accuracy; dotted: majority class)", fontsize=8)
    right.set_title(f"{label}: SGD per-layer probes (PR as 1 − PER)", fontsize=8)
    for ax in (left, right):
        _layer_axis(ax, names)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("layer", fontsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="best")
    left.set_ylabel("accuracy", fontsize=8)
    return _png(fig)


def training_free_profiles(profiles: pd.DataFrame, replicates: pd.DataFrame, models: dict[str, Any],
                           reference: str = PHONE) -> tuple[dict[str, Profile], pd.DataFrame]:
    """Per model, the training-free ``reference`` profile as the findings' :class:`Profile` (closed-form accuracy on frame-level
    layers: dev to choose the best layer, test to compare), and its test replicates in the probe replicates' schema."""
    out: dict[str, Profile] = {}
    if profiles.empty:
        return out, pd.DataFrame(columns=["model", "task", "probe", "split", "metric", "group", "value"])
    for model, sub in profiles[(profiles["reference"] == reference) & (profiles["measure"] == "accuracy")].groupby("model"):
        dev = sub[sub["split"] == "dev"].set_index("layer")
        test = sub[sub["split"] == "test"].set_index("layer")
        present = [n for n in test.index if n in dev.index]
        names, source = frame_layers(models.get(model, {}), present)
        if not names:
            continue
        out[str(model)] = Profile(str(model), PROFILE_TASK, "accuracy", names, dev.loc[names, "value"].to_numpy(float),
                                  test.loc[names, "value"].to_numpy(float), test.loc[names, "ci_low"].to_numpy(float),
                                  test.loc[names, "ci_high"].to_numpy(float), True, source, [p for p in present if p not in names])
    reps = pd.DataFrame(columns=["model", "task", "probe", "split", "metric", "group", "value"])
    if not replicates.empty:
        r = replicates[(replicates["reference"] == reference) & (replicates["measure"] == "accuracy") & (replicates["split"] == "test")]
        reps = pd.DataFrame({"model": r["model"], "task": PROFILE_TASK, "probe": r["layer"], "split": "test", "metric": "accuracy",
                             "group": r["group"].astype(str), "value": r["value"]})
    return out, reps


def encodes_section(index: dict[str, Any], metrics: pd.DataFrame, models: dict[str, Any], split: str
                    ) -> tuple[str, list[tuple[str, bytes, str]], dict[str, pd.DataFrame]]:
    """(section HTML without figures, [(file name, png, caption)], tables) of the panel; a note when no profile ran."""
    from layerlab.report import html

    profiles, _ = load_profiles(index.get("profiles", []))
    skipped = [(p["model"], s) for p in index.get("profiles", []) for s in (p.get("skipped") or [])]
    notes = [(p["model"], n) for p in index.get("profiles", []) for n in (p.get("notes") or [])]
    table = encodes_table(profiles, metrics, models, split)
    agree = agreement_table(table)
    pngs = []
    for name, info in models.items():
        if (table["model"] == name).any():
            label = info.get("label", name)
            pngs.append((f"encodes_{name}.png", encodes_figure(table, name, label, info.get("layers", [])),
                         f"What each layer of {label} encodes ({split} split): left, training-free closed-form held-out accuracy per reference "
                         "(one line each, 95 % speaker-jackknife band); right, the SGD per-layer probe of the matching task"))
    if table.empty:
        body = "<p>No training-free profiles in this study (add a <code>profile:</code> section, or run <code>layerlab profile</code>).</p>"
    else:
        body = ("<p>Training-free: per reference, a least-squares classifier fitted in closed form on the train split's merged "
                "moment state (ridge chosen on dev), its accuracy on held-out test items; SGD: the per-layer probes of the "
                "matching task. Spearman ρ compares the two profiles over the layers both have.</p>" + _agreement_html(agree, models))
    if skipped:
        body += "<h3>References skipped</h3><ul>" + "".join(
            f"<li>{html.esc(models.get(m, {}).get('label', m))}: {html.esc(s['reason'])}</li>" for m, s in skipped) + "</ul>"
    if notes:
        body += "<h3>Notes</h3><ul>" + "".join(f"<li>{html.esc(models.get(m, {}).get('label', m))}: {html.esc(n)}</li>" for m, n in notes) + "</ul>"
    return body, pngs, {"encodes": table, "encodes_agreement": agree}


def _agreement_html(agree: pd.DataFrame, models: dict[str, Any]) -> str:
    from layerlab.report import html

    if agree.empty:
        return ""
    rows = "".join(
        f"<tr><td class='name'>{html.esc(models.get(r.model, {}).get('label', r.model))}</td><td>{html.esc(r.reference)}</td>"
        f"<td>{html.esc(str(r.sgd_task).upper() or '—')}</td><td>{r.n_layers}</td>"
        f"<td>{'—' if not np.isfinite(r.spearman) else f'{r.spearman:+.2f}'}</td><td>{html.esc(r.best_training_free)}</td>"
        f"<td>{html.esc(r.best_sgd or '—')}</td></tr>" for r in agree.itertuples())
    return ("<table id='encodes-agreement'><thead><tr><th>model</th><th>reference</th><th>SGD task</th><th>layers</th><th>Spearman ρ</th>"
            f"<th>best layer (training-free)</th><th>best layer (SGD)</th></tr></thead><tbody>{rows}</tbody></table>")

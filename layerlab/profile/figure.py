"""The profile figure: one panel per reference, its measures across the model's layers (names on the x axis), 95 % bands."""

from __future__ import annotations

import io

import pandas as pd

#: line style of each measure drawn (cca_r2 and the purities stay in the table)
STYLES = {"accuracy": ("held-out accuracy (closed form)", "-"), "cca_mean": ("mean CCA", "--"), "pnmi": ("PNMI (k-means units)", ":")}


def profile_figure(df: pd.DataFrame, title: str) -> bytes:
    """PNG bytes of the profile panels (an empty note when the table has no rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refs = list(dict.fromkeys(df["reference"])) if not df.empty else []
    cols = max(1, min(3, len(refs)))
    rows = max(1, -(-len(refs) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False, constrained_layout=True)
    for ax in axes.ravel()[len(refs):]:
        ax.axis("off")
    if not refs:
        axes[0, 0].text(0.5, 0.5, "no reference could be profiled", ha="center", va="center")
    for ax, ref in zip(axes.ravel(), refs):
        sub = df[df["reference"] == ref]
        layers = [n for _, n in sorted(set(zip(sub["layer_index"], sub["layer"])))]
        for measure, (label, style) in STYLES.items():
            m = sub[sub["measure"] == measure].sort_values("layer_index")
            if m.empty:
                continue
            x = m["layer_index"].to_numpy()
            line, = ax.plot(x, m["value"], style, marker="o", ms=3, label=label)
            if m["ci_low"].notna().any():
                ax.fill_between(x, m["ci_low"], m["ci_high"], color=line.get_color(), alpha=0.15, lw=0)
            chance = m["chance"].dropna() if "chance" in m else pd.Series(dtype=float)
            if measure == "accuracy" and not chance.empty:
                ax.axhline(float(chance.mean()), color="grey", lw=0.8, ls="-.", label="majority class")
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels(layers, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(0, 1.02)
        level = str(sub["level"].iloc[0])
        ax.set_title(f"{ref} ({level} level)", fontsize=9)
        ax.set_xlabel("layer", fontsize=8)
        ax.legend(fontsize=6, loc="best")
    fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()

"""Training outputs the study reads: the training-curve PNG and summary.json."""

from __future__ import annotations

import io
from typing import Any

from layerlab import storage


def write_curve(out: str, recipe: str, history: list[dict], primary: str) -> str:
    """``curve.png``: training loss per logged step (left) and the evaluation metric per epoch (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loss = [(r["step"], r["value"]) for r in history if r["metric"] == "train_loss"]
    evals = sorted((r["epoch"], r["value"]) for r in history if r["metric"] == primary)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    if loss:
        a.plot(*zip(*loss), lw=1)
    a.set_xlabel("training step")
    a.set_ylabel("training loss")
    a.set_title(f"{recipe}: training loss")
    if evals:
        b.plot(*zip(*evals), marker="o")
    b.set_xlabel("epoch (0 = random initialisation)")
    b.set_ylabel(primary)
    b.set_title(f"{recipe}: {primary} per epoch")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    url = storage.join(out, "curve.png")
    storage.atomic_write_bytes(url, buf.getvalue())
    return url


def write_summary(out: str, summary: dict[str, Any]) -> str:
    """``summary.json`` (written last: its ``complete`` flag marks a finished run)."""
    url = storage.join(out, "summary.json")
    storage.write_json(url, summary)
    return url

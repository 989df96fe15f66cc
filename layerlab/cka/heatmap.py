"""CKA heat maps in the style of the paper's figures: layer names on the axes, one shared colour scale."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass
class HeatmapPanel:
    """One CKA map: ``matrix[a, b]`` with rows = model A layers (y axis), cols = model B layers (x axis)."""

    matrix: np.ndarray
    title: str
    label_a: str = "layer"
    label_b: str = "layer"
    names_a: Sequence[str] | None = None  # tick labels (layer names); None: indices
    names_b: Sequence[str] | None = None


def heatmap_figure(panels: Sequence[HeatmapPanel], vmin: float = 0.0, vmax: float = 1.0, columns: int | None = None,
                   label: str = "linear CKA", cmap: str = "magma") -> Any:
    """The matplotlib figure of all panels side by side sharing one colour scale ``[vmin, vmax]`` and one colour bar.

    ``label`` names the measure on the colour bar; ``cmap``: a reversed map (``magma_r``) for distances, so that
    similar layers look alike in every measure's map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("panels: need at least one CKA matrix to plot")
    cols = columns or min(len(panels), 4)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols + 0.8, 3.2 * rows), squeeze=False, constrained_layout=True)
    image = None
    for ax, panel in zip(axes.ravel(), panels):
        mat = np.asarray(panel.matrix, dtype=np.float64)
        image = ax.imshow(mat, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
        ax.set_title(panel.title, fontsize=9)
        ax.set_ylabel(panel.label_a if panel.names_a is not None else f"{panel.label_a} index")
        ax.set_xlabel(panel.label_b if panel.names_b is not None else f"{panel.label_b} index")
        for axis, size, names, rotate in ((ax.xaxis, mat.shape[1], panel.names_b, 60), (ax.yaxis, mat.shape[0], panel.names_a, 0)):
            step = max(1, -(-size // 14)) if names is not None else max(1, size // 6)
            ticks = list(range(0, size, step))
            axis.set_ticks(ticks)
            if names is not None:
                axis.set_ticklabels([str(names[t]) for t in ticks], fontsize=7, rotation=rotate)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.85, label=label)
    return fig


def render_heatmaps(panels: Sequence[HeatmapPanel], vmin: float = 0.0, vmax: float = 1.0, columns: int | None = None,
                    label: str = "linear CKA", cmap: str = "magma") -> bytes:
    """PNG bytes of :func:`heatmap_figure`."""
    import matplotlib.pyplot as plt

    fig = heatmap_figure(panels, vmin, vmax, columns, label, cmap)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def write_heatmaps(url: str, panels: Sequence[HeatmapPanel], vmin: float = 0.0, vmax: float = 1.0, label: str = "linear CKA",
                   cmap: str = "magma") -> None:
    """Render ``panels`` and write the PNG to any storage URL."""
    from layerlab import storage

    storage.atomic_write_bytes(url, render_heatmaps(panels, vmin, vmax, label=label, cmap=cmap))


def colour_scale(low: float, high: float, similarity: bool, values: Sequence[np.ndarray]) -> tuple[float, float, str]:
    """``(vmin, vmax, cmap)`` of one measure's maps: its range where finite (an open end: the data's), reversed for distances."""
    finite = [v[np.isfinite(v)] for v in (np.asarray(x, dtype=np.float64) for x in values)]
    data = np.concatenate(finite) if finite else np.zeros(0)
    vmin = low if np.isfinite(low) else min(0.0, float(data.min()) if data.size else 0.0)
    vmax = high if np.isfinite(high) else max(1.0, float(data.max()) if data.size else 1.0)
    return vmin, vmax, "magma" if similarity else "magma_r"

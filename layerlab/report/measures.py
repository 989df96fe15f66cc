"""The report's "Similarity measures" section: each measure's heat maps and how the measures agree.

Reads only what the CKA stages wrote (index entries' ``measures`` and ``agreement``): the per-measure
PNGs (rendered by the stage with layer names on the axes and the measure's own colour scale) and
the measure-agreement tables (Spearman between measures over layer pairs, per model pair).
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from layerlab import storage
from layerlab.report import html
from layerlab.report.load import read_parquet

AGREEMENT_COLUMNS = ["dataset", "level", "model_a", "model_b", "block", "measure_1", "measure_2", "spearman", "n_pairs", "note"]


def _label(models: dict[str, Any], name: str) -> str:
    return str(models.get(name, {}).get("label", name))


def agreement_table(entries: Sequence[dict[str, Any]], models: dict[str, Any]) -> pd.DataFrame:
    """Every CKA stage's measure-agreement rows, with the study's model names (A x B blocks of across stages; within stages' A x A)."""
    frames = []
    for e in entries:
        url = e.get("agreement")
        if not url or not storage.exists(url):
            continue
        df = read_parquet(url)
        names = list(e["models"]) * (2 if len(e["models"]) == 1 else 1)
        keep = "a_a" if e["mode"] == "within" else "a_b"
        df = df[df["block"] == keep].copy()
        df["model_a"], df["model_b"] = _label(models, names[0]), _label(models, names[1])
        df["dataset"], df["level"] = e["dataset"], e["level"]
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=AGREEMENT_COLUMNS)
    return pd.concat(frames, ignore_index=True)[AGREEMENT_COLUMNS]


def _rho(value: Any) -> str:
    return "–" if pd.isna(value) else f"{float(value):+.2f}"


def agreement_html(table: pd.DataFrame) -> str:
    """One table row per model pair and pair of measures (Spearman over that block's layer pairs)."""
    if table.empty:
        return "<p id='measure-agreement'><small>Only one measure per comparison: no agreement to show.</small></p>"
    rows = "".join(
        f"<tr><td class='name'>{html.esc(r['model_a'])}{'' if r['model_a'] == r['model_b'] else ' × ' + html.esc(r['model_b'])}</td>"
        f"<td>{html.esc(r['dataset'])}, {html.esc(r['level'])}</td><td>{html.esc(r['measure_1'])}</td><td>{html.esc(r['measure_2'])}</td>"
        f"<td>{_rho(r['spearman'])}</td><td>{int(r['n_pairs'])}</td>"
        f"<td style='text-align:left'><small>{html.esc(r['note'] or '')}</small></td></tr>"
        for _, r in table.iterrows())
    return ("<h3>Measure agreement</h3><p><small>Spearman rank correlation between two measures over the layer pairs of one comparison "
            "(within a model: each pair of different layers; across: every A × B pair). Distances (Procrustes) are negated, so +1 means the "
            "two measures rank the layer correspondences identically.</small></p>"
            "<table id='measure-agreement'><thead><tr><th>models</th><th>data</th><th>measure</th><th>measure</th><th>Spearman</th>"
            f"<th>layer pairs</th><th>note</th></tr></thead><tbody>{rows}</tbody></table>")


def measure_figures(entries: Sequence[dict[str, Any]], models: dict[str, Any]) -> list[tuple[str, bytes, str]]:
    """(file name, png, caption) of every measure's heat map beyond linear CKA (that one is in the CKA section)."""
    out = []
    for e in entries:
        for name, m in sorted((e.get("measures") or {}).items()):
            png_url = m.get("heatmap")
            if name == "linear_cka" or not png_url or not storage.exists(png_url):
                continue
            who = " × ".join(_label(models, x) for x in e["models"])
            rng = m.get("range") or []
            scale = f"colour scale [{rng[0]:g}, {rng[1]:g}]" if len(rng) == 2 else "its own colour scale"
            kind = "a distance: dark = similar" if m.get("similarity") is False else "bright = similar"
            fname = f"measure_{name}_{e['mode']}_{'__'.join(e['models'])}_{e['dataset']}_{e['level']}.png"
            out.append((fname, storage.read_bytes(png_url), f"{name}: {who} ({e['mode']}), dataset {e['dataset']}, {e['level']} level; {scale} ({kind})"))
    return out


def measures_section(entries: Sequence[dict[str, Any]], models: dict[str, Any]) -> tuple[str, pd.DataFrame, list[tuple[str, bytes, str]]]:
    """(inner HTML, agreement table, figures) of the section; empty HTML when no stage computed more than linear CKA."""
    figs = measure_figures(entries, models)
    table = agreement_table(entries, models)
    if not figs and table.empty:
        return "", table, figs
    body = agreement_html(table) + "".join(html.figure(png, cap, fname) for fname, png, cap in figs)
    return body, table, figs

"""The report's similarity-measures section: per-measure heat maps and the measure-agreement table, from stage outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from report_fixtures import MODELS, write_study_results

from layerlab.cka.agreement import write_agreement
from layerlab.cka.heatmap import HeatmapPanel, write_heatmaps
from layerlab.report import build_report


class _Result:
    def __init__(self, values: np.ndarray) -> None:
        self.values = values


def test_measures_section_shows_each_measures_maps_and_their_agreement(tmp_path: Path) -> None:
    index = write_study_results(tmp_path / "res")
    entry = next(e for e in index["cka"] if e["mode"] == "across")
    a, b = entry["models"]
    la, lb = MODELS[a]["layers"], MODELS[b]["layers"]
    n = len(la) + len(lb)
    depth = np.abs(np.subtract.outer(range(n), range(n)))
    results = {"linear_cka": _Result(np.exp(-depth / 3)), "cca_r2": _Result(np.exp(-depth / 5)), "procrustes": _Result(2 - 2 * np.exp(-depth / 4))}
    blocks = {"a_a": (slice(0, len(la)), slice(0, len(la)), 0, 0), "b_b": (slice(len(la), None), slice(len(la), None), 1, 1),
              "a_b": (slice(0, len(la)), slice(len(la), None), 0, 1)}
    agreement = write_agreement(str(tmp_path / "res" / "agreement.parquet"), results, blocks, [la, lb], [a, b], "utterance")
    png = str(tmp_path / "res" / "cka_procrustes_utterance.png")
    write_heatmaps(png, [HeatmapPanel(results["procrustes"].values[:len(la), len(la):], "p", names_a=la, names_b=lb)], 0.0, 2.0,
                   label="Procrustes distance", cmap="magma_r")
    entry["measures"] = {"linear_cka": {"heatmap": png}, "procrustes": {"heatmap": png, "range": [0.0, 2.0], "similarity": False}}
    entry["agreement"] = agreement
    summary = build_report(index, str(tmp_path / "report"))
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<section id='measures'><h2>Similarity measures</h2>" in page and "id='measure-agreement'" in page
    assert "procrustes: " in page and "colour scale [0, 2] (a distance: dark = similar)" in page
    table = pd.read_parquet(summary["tables"]["measure_agreement"])
    assert set(table["block"]) == {"a_b"} and len(table) == 3  # the across stage's A x B block: 3 pairs of measures
    row = table[(table.measure_1 == "linear_cka") & (table.measure_2 == "procrustes")].iloc[0]
    assert row.spearman == 1.0 and "procrustes negated" in row.note  # a distance ranks alike once negated
    assert any(f.endswith(f"measure_procrustes_across_{a}__{b}_synth_utterance.png") for f in summary["figures"])


def test_no_measures_section_for_linear_cka_alone(tmp_path: Path) -> None:
    from layerlab.report.measures import measures_section

    index = write_study_results(tmp_path / "res")
    html, table, figures = measures_section(index["cka"], MODELS)
    assert html == "" and table.empty and figures == []

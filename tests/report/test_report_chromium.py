"""The report opens in real headless Chromium: every figure renders and the table has a row per model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers.chromium import render_check
from layerlab.report import build_report
from report_fixtures import MODELS


def test_report_renders_in_headless_chromium(study_results: dict[str, Any], tmp_path: Path) -> None:
    build_report(study_results, str(tmp_path / "report"))
    check = render_check(tmp_path / "report" / "index.html")
    assert check["images"] == 10 and check["broken"] == [], check
    assert all(w > 300 for w in check["widths"]), check["widths"]
    assert sorted(check["rows"]) == sorted(MODELS)  # one row per model

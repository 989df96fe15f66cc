"""Report test fixtures (tables in the contract's schemas: see report_fixtures.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from report_fixtures import write_study_results


@pytest.fixture()
def study_results(tmp_path: Path) -> dict[str, Any]:
    """A study index over freshly written result tables."""
    return write_study_results(tmp_path / "results")

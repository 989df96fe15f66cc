"""Report test fixtures (tables in the contract's schemas: see report_fixtures.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from report_fixtures import write_study_results  # noqa: E402


@pytest.fixture()
def study_results(tmp_path: Path) -> dict[str, Any]:
    """A study index over freshly written result tables."""
    return write_study_results(tmp_path / "results")

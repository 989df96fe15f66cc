"""Headless Chromium for tests: the report's own render check, skipped with a clear message where Chromium is absent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from layerlab.report.render_check import ChromiumMissing, chromium_binary
from layerlab.report.render_check import render_check as _render_check


def require_chromium() -> str:
    """The Chromium binary, or skip the test saying how to install it."""
    try:
        return chromium_binary()
    except ChromiumMissing as exc:
        pytest.skip(str(exc))


def render_check(html_file: Path, timeout: float = 90.0) -> dict[str, Any]:
    """Load ``html_file`` in headless Chromium; returns {images, broken, rows, widths} (skips without Chromium)."""
    require_chromium()
    return _render_check(html_file, timeout)

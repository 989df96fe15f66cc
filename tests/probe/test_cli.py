"""`layerlab probe`: registered, --help with an example, clear one-line errors for a missing cache or unknown task."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from layerlab.cli import app


def test_probe_help_has_an_example() -> None:
    result = CliRunner().invoke(app, ["probe", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output and "--scheduler" in result.output


def test_missing_cache_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["probe", "--cache", str(tmp_path / "nope"), "--task", "sid", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "error:" in result.output and str(tmp_path / "nope") in result.output and "Traceback" not in result.output


def test_unknown_task_names_the_known_ones(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["probe", "--cache", str(tmp_path), "--task", "xyz", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "unknown probe task 'xyz'" in result.output and "asv-cosine" in result.output

"""``layerlab corpus synth``: help, a tiny build from a YAML config with overrides, bad input."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from layerlab.cli import app
from layerlab.data.manifest import read_manifest

runner = CliRunner()


def test_help_lists_the_options() -> None:
    result = runner.invoke(app, ["corpus", "synth", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--out", "--speakers", "--seed", "--config", "--workers", "--clean"):
        assert option in result.output


def test_cli_builds_a_tiny_corpus(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("synth:\n  unknown_per_speaker: 0\n  commands_per_speaker: 1\n  style_sentences_per_speaker: 0\n  keyword_repeats: 0\n  silence_per_speaker: 1\n")
    out = tmp_path / "corpus"
    result = runner.invoke(app, ["corpus", "synth", "--out", str(out), "--config", str(cfg), "--speakers", "4", "--seed", "3", "--read-per-speaker", "3", "--clean", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "kept: 20 utterances" in result.output and "quarantined: 0" in result.output
    m = read_manifest(str(out))
    assert m.kept == 4 * (3 + 1 + 1)
    assert m.extra["config"]["seed"] == 3 and m.extra["config"]["noise"]["prob"] == 0.0
    assert m.tables["asv_trials"].rows > 0


def test_cli_reports_bad_config(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = runner.invoke(app, ["corpus", "synth", "--out", str(tmp_path / "c"), "--config", str(missing)])
    assert result.exit_code == 2
    assert str(missing) in result.output
    result = runner.invoke(app, ["corpus", "synth", "--out", str(tmp_path / "c"), "--speakers", "1"])
    assert result.exit_code == 2

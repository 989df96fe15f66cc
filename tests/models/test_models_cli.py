"""``layerlab models describe``: layers, dims, frame rates and parameter count; readable errors."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from layerlab.models.cli import register


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """root"""

    register(app)
    return app


def test_describe_ge2e_prints_layers_dims_rates_and_parameters():
    result = CliRunner().invoke(_app(), ["models", "describe", "ge2e", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "ge2e: 4 layers, 1,423,616 parameters, 16000 Hz input, padding_invariant=True" in result.output
    assert "lstm1" in result.output and "100 Hz" in result.output
    assert [l.split() for l in result.output.splitlines() if l.startswith("embedding")] == [["embedding", "256", "utterance"]]


def test_describe_json_and_unknown_spec(tiny_dir):
    import json

    from layerlab.models import tiny

    path = tiny.build_layerlab_ecapa(str(tiny_dir / "cli_ecapa.pt"))
    result = CliRunner().invoke(_app(), ["models", "describe", f"ckpt:{path}", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert [l["name"] for l in info["layers"]][-2:] == ["asp", "embedding"]
    assert info["layers"][4] == {"name": "mfa", "dim": 96, "frame_rate": 100.0, "utterance_level": False}
    bad = CliRunner().invoke(_app(), ["models", "describe", "nosuch:model"])
    assert bad.exit_code == 2 and "unknown model spec 'nosuch:model'" in bad.output


def test_help_has_examples():
    for args in (["models", "--help"], ["models", "describe", "--help"], ["models", "build-tiny", "--help"]):
        result = CliRunner().invoke(_app(), args)
        assert result.exit_code == 0 and "Example" in result.output, args

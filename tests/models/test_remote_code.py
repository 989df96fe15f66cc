"""A speechbrain bundle's hyperparams.yaml is HyperPyYAML (it imports and calls what it names): it is evaluated only with
the user's consent, and never by a dry run or a plan (those read its keys as text)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from layerlab.cli import app
from layerlab.models import tiny
from layerlab.models.errors import RemoteCodeRefused


def _bundle(tmp_path: Path) -> tuple[Path, Path]:
    """A valid tiny ECAPA bundle whose hyperparams.yaml also runs ``os.makedirs(MARKER)`` when evaluated."""
    bundle = tiny.build_speechbrain_ecapa(tmp_path / "bundle", seed=0)
    marker = tmp_path / "MARKER"
    text = (bundle / "hyperparams.yaml").read_text()
    (bundle / "hyperparams.yaml").write_text(text + f"side_effect: !apply:os.makedirs [{marker}]\n")
    return bundle, marker


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_an_apply_tag_is_not_run_by_a_study_dry_run(tmp_path: Path) -> None:
    bundle, marker = _bundle(tmp_path)
    cfg = tmp_path / "study.yaml"
    doc = {"datasets": {"d": {"synth": {"speakers": 4}}}, "models": {"sb": {"spec": f"speechbrain:{bundle}"}}}
    cfg.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(app, ["study", str(cfg), "--dry-run", "--out", str(tmp_path / "out")])
    errors = _errors(result.output)
    assert result.exit_code == 2 and len(errors) == 1 and "trust_remote_code: true" in errors[0], result.output
    assert not marker.exists()
    cfg.write_text(yaml.safe_dump({**doc, "trust_remote_code": True}))
    result = CliRunner().invoke(app, ["study", str(cfg), "--dry-run", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0 and "plan OK" in result.output, result.output
    assert not marker.exists()  # consent given, but a dry run still only reads the file as text


def test_the_text_check_still_names_a_broken_bundle_without_running_it(tmp_path: Path) -> None:
    from layerlab.models.preflight import check_loadable

    bundle, marker = _bundle(tmp_path)
    text = (bundle / "hyperparams.yaml").read_text().replace("embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN",
                                                             "embedding_model: !new:os.system")
    (bundle / "hyperparams.yaml").write_text(text)
    with pytest.raises(ValueError, match="embedding_model is !new:os.system, not !new:speechbrain"):
        check_loadable(f"speechbrain:{bundle}", text_only=True)
    assert not marker.exists()


def test_loading_needs_consent_and_runs_only_with_it(tmp_path: Path) -> None:
    from layerlab.models import load

    bundle, marker = _bundle(tmp_path)
    spec = f"speechbrain:{bundle}"
    result = CliRunner().invoke(app, ["extract", "--model", spec, "--data", str(tmp_path / "data"), "--out", str(tmp_path / "c")])
    errors = _errors(result.output)
    assert result.exit_code == 2 and len(errors) == 1 and "--trust-remote-code" in errors[0], result.output
    with pytest.raises(RemoteCodeRefused):
        load(f"random:seed=1:{spec}", device="cpu")  # a control of the bundle loads it too
    assert not marker.exists()
    result = CliRunner().invoke(app, ["models", "describe", spec, "--device", "cpu", "--trust-remote-code"])
    assert result.exit_code == 0 and "embedding" in result.output, result.output
    assert marker.is_dir()  # consent given: HyperPyYAML ran (which is why it needs consent)

"""A probe resumes only the settings it recorded; ties between trials are broken by trial id, also after a resume."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from memory_data import planted_source
from typer.testing import CliRunner

import layerlab.probe.api as api
from layerlab.probe.config import ProbeConfig
from layerlab.probe.sweep import TrialOutcome
from layerlab.settings import SettingsMismatch

FAST = {"max_epochs": 2, "patience": 2, "batch_size": 8, "intervals": False, "lr": 1e-2}


@pytest.fixture()
def planted(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    source = planted_source()
    monkeypatch.setattr(api, "open_source", lambda cache, **kwargs: source)
    return source


def test_a_rerun_with_other_settings_stops_naming_the_keys_and_overwrite_starts_afresh(planted, tmp_path: Path) -> None:
    out = tmp_path / "sid"
    first = api.run_probe("planted", "sid", str(out), layers="weighted", runner="local", config=ProbeConfig(**FAST))
    assert first["settings"]["config"]["lr"] == 1e-2 and first["settings"]["runner"] == "local"
    recorded = json.loads((out / "settings.json").read_text())
    assert recorded["fingerprint"] == first["settings_fingerprint"] and recorded["command"] == "probe"
    api.run_probe("planted", "sid", str(out), layers="weighted", runner="local", config=ProbeConfig(**FAST))  # same settings: fine
    before = (out / "summary.json").read_text()
    with pytest.raises(SettingsMismatch, match=r"holds probe results made with other settings \(differing: config.lr, seed\)") as err:
        api.run_probe("planted", "sid", str(out), layers="weighted", runner="local", config=ProbeConfig(**{**FAST, "lr": 3e-2}), seed=1)
    assert err.value.keys == ["config.lr", "seed"]
    assert (out / "summary.json").read_text() == before  # nothing of the old results was replaced
    again = api.run_probe("planted", "sid", str(out), layers="weighted", runner="local", config=ProbeConfig(**{**FAST, "lr": 3e-2}),
                          seed=1, overwrite=True)
    assert again["settings"]["config"]["lr"] == 3e-2 and json.loads((out / "settings.json").read_text())["settings"]["seed"] == 1


def test_the_cli_says_it_in_one_line_with_exit_code_2(planted, tmp_path: Path) -> None:
    from layerlab.cli import app

    out = str(tmp_path / "sid")
    cfg = tmp_path / "probe.yaml"
    cfg.write_text("max_epochs: 2\npatience: 2\nbatch_size: 8\nintervals: false\n")
    args = ["probe", "--cache", "planted", "--task", "sid", "--out", out, "--layers", "weighted", "--runner", "local", "--config", str(cfg)]
    assert CliRunner().invoke(app, args).exit_code == 0
    result = CliRunner().invoke(app, [*args, "--seed", "3"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: the output folder holds probe results made with other settings (differing: seed); use another --out, "
                     f"or --overwrite to start afresh ({out})"]
    assert CliRunner().invoke(app, [*args, "--seed", "3", "--overwrite"]).exit_code == 0


def test_ties_on_dev_go_to_the_lowest_trial_id_whatever_order_the_trials_come_in() -> None:
    def outcome(trial: str, dev: float, lr: float) -> TrialOutcome:
        return TrialOutcome(trial, {"lr": lr}, dev, 3, {"best_state": {}})

    trials = [outcome("ab12c_00002", 0.75, 3e-3), outcome("ab12c_00001", 0.875, 1e-2), outcome("ab12c_00000", 0.875, 3e-2),
              outcome("ab12c_00003", float("nan"), 1.0)]
    for order in itertools.permutations(trials):
        assert api._best(list(order), True, "sweep").trial_id == "ab12c_00000"
        assert api._best(list(order), False, "sweep").trial_id == "ab12c_00002"


SWEEP = """
import sys
sys.path.insert(0, {tests!r})
from memory_data import planted_source
import layerlab.probe.api as api
from layerlab.probe.config import ProbeConfig
source = planted_source()
api.open_source = lambda cache, **kwargs: source
cfg = ProbeConfig(max_epochs=4, patience=4, batch_size=8, intervals=False, cpus_per_trial=1, max_concurrent_trials=1,
                  search={{"lr": (1e-2, 1.000001e-2), "weight_decay": [0.0, 1e-9], "hidden": [32]}})
api.run_probe("planted", "sid", {out!r}, layers="weighted", tune_samples=4, config=cfg, runner="tune")
"""


@pytest.mark.slow
def test_a_killed_and_resumed_sweep_with_tied_trials_reports_what_an_uninterrupted_one_does(ray_session, tmp_path: Path) -> None:
    """Trials differ only in no-ops (weight decay 0 or 1e-9, lr within 1e-6 of 0.01): dev metrics tie; the resumed sweep must pick the same trial."""
    import ray

    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "PYTHONPATH": os.pathsep.join(sys.path)}
    tests = str(Path(__file__).parent)

    def sweep(out: Path, kill_after_checkpoints: int | None = None) -> dict:
        proc = subprocess.Popen([sys.executable, "-c", SWEEP.format(tests=tests, out=str(out))], env=env, start_new_session=True)
        if kill_after_checkpoints is None:
            assert proc.wait(timeout=600) == 0
        else:
            deadline = time.time() + 600
            while len(list((out / "tune" / "weighted_sum").glob("*/checkpoint_*"))) < kill_after_checkpoints:
                assert proc.poll() is None and time.time() < deadline, "the sweep ended before it could be killed"
                time.sleep(0.5)
            os.killpg(proc.pid, signal.SIGKILL)  # the driver dies mid-sweep; its trials die with it
            proc.wait(timeout=60)
            assert not (out / "summary.json").exists()
            assert subprocess.run([sys.executable, "-c", SWEEP.format(tests=tests, out=str(out))], env=env, timeout=600).returncode == 0
        return json.loads((out / "summary.json").read_text())

    whole = sweep(tmp_path / "whole")
    resumed = sweep(tmp_path / "resumed", kill_after_checkpoints=2)
    assert whole["best"] == resumed["best"] and whole["test"] == resumed["test"]

"""Nothing under an output folder is unpickled: trial state is tensors + JSON, Tune's pickled state needs explicit trust.

The proof of concept from issue 23: a pickle whose ``__reduce__`` runs code (here: creates a marker folder)
placed where trial state lives. A rerun must not run it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from memory_data import planted_source

from layerlab.probe import sweep
from layerlab.probe.config import ProbeConfig
from layerlab.probe.sweep import UntrustedState, load_state, param_space, run_sweep, save_state


class Payload:
    """Unpickling this runs ``os.makedirs(marker)``: a harmless stand-in for ``os.system``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _plant(root: Path, marker: Path) -> list[Path]:
    """Replace every trial state file (and Tune's own tuner.pkl) under ``root`` by the payload."""
    planted = []
    for path in [*root.rglob(sweep.STATE_FILE), *root.rglob("tuner.pkl")]:
        torch.save(Payload(str(marker)), path)
        planted.append(path)
    return planted


def test_trial_state_is_tensors_and_json_and_a_pickle_with_code_is_refused(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    snap = {"model": model.state_dict(), "optimizer": opt.state_dict(), "best_state": model.state_dict(), "epoch": 3,
            "best": 0.5, "history": [{"epoch": 1, "dev": float("nan")}], "lowest_loss": float("inf"), "bad": 0}
    save_state(str(tmp_path), snap)
    back = load_state(str(tmp_path))
    assert back["epoch"] == 3 and back["history"][0]["epoch"] == 1 and back["lowest_loss"] == float("inf")
    assert torch.equal(back["model"]["weight"], model.weight) and back["optimizer"]["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    marker = tmp_path / "MARKER"
    torch.save(Payload(str(marker)), tmp_path / sweep.STATE_FILE)
    with pytest.raises(UntrustedState, match="refused without unpickling it"):
        load_state(str(tmp_path))
    assert not marker.exists()


def test_a_planted_pickle_in_a_probe_output_never_runs(ray_session, tmp_path: Path, capsys) -> None:
    """Rerun of a sweep whose trial states (and tuner.pkl) were replaced: with --trust-tune-state the trial states still
    load only as tensors and the bad one is named in one error; by default the experiment is set aside (recomputed)."""
    source = planted_source()
    cfg = ProbeConfig(max_epochs=2, patience=2, batch_size=8, cpus_per_trial=1, intervals=False, lr=1e-2)
    kwargs = dict(layers=["l0", "l1", "emb"], storage_url=str(tmp_path / "tune"), name="weighted_sum", space=param_space(cfg, 1),
                  samples=1, scheduler=None, mode="max", within=str(tmp_path))
    first = run_sweep(source, "sid", cfg, **kwargs)
    assert len(first) == 1 and first[0].state is not None
    marker = tmp_path / "MARKER"
    assert _plant(tmp_path / "tune", marker), "no trial state was written"
    sweep._CREATED.clear()  # a new process: the experiment was not made by this run
    with pytest.raises(UntrustedState, match=r"tune/weighted_sum/.*state\.pt: not a layerlab trial state"):
        run_sweep(source, "sid", cfg, **kwargs, trust_tune_state=True)
    assert not marker.exists()
    exp = tmp_path / "tune" / "weighted_sum"
    assert sweep._restorable(str(exp), str(exp), None, False, str(tmp_path)) is False  # default: never restored
    assert not exp.exists() and not marker.exists()  # set aside inside --out: the sweep starts afresh
    assert "is not restored without --trust-tune-state" in capsys.readouterr().err

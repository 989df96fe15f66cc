"""Ray Tune sweeps on a real local Ray over an in-memory source (slow; the fast suite sweeps a real cache in test_cache_e2e)."""

from __future__ import annotations

import pandas as pd
import pytest
from memory_data import planted_source

from layerlab.probe.config import ProbeConfig
from layerlab.probe.sweep import param_space, run_sweep


@pytest.fixture(scope="module")
def source():
    return planted_source()


@pytest.mark.slow
def test_asha_sweep_of_four_trials(ray_session, source, tmp_path) -> None:
    cfg = ProbeConfig(max_epochs=6, patience=6, batch_size=8, cpus_per_trial=0.5, asha_grace_period=2, intervals=False,
                      search={"lr": (3e-3, 3e-2), "weight_decay": [0.0], "hidden": [16, 32]})
    outcomes = run_sweep(source, "sid", cfg, layers=["l0", "l1", "l2", "emb"], storage_url=str(tmp_path / "tune"), name="ws",
                         space=param_space(cfg, 4), samples=4, scheduler="asha", mode="max", seed=0)
    assert len(outcomes) == 4 and all(o.error is None for o in outcomes)
    assert len({o.config["lr"] for o in outcomes}) == 4  # sampled log-uniform
    assert all(3e-3 <= o.config["lr"] <= 3e-2 and o.config["hidden"] in (16, 32) for o in outcomes)
    assert all(o.state is not None and "best_state" in o.state for o in outcomes)
    assert max(o.best_dev for o in outcomes) >= 0.8
    assert any(o.epochs < 6 for o in outcomes) or len({o.epochs for o in outcomes}) == 1  # ASHA may stop the worst
    assert (tmp_path / "tune" / "ws").is_dir()
    # a second call restores the finished experiment instead of training again
    again = run_sweep(source, "sid", cfg, layers=["l0", "l1", "l2", "emb"], storage_url=str(tmp_path / "tune"), name="ws",
                      space=param_space(cfg, 4), samples=4, scheduler="asha", mode="max", seed=0)
    assert sorted(o.config["lr"] for o in again) == sorted(o.config["lr"] for o in outcomes)


@pytest.mark.slow
def test_per_layer_grid(ray_session, source, tmp_path) -> None:
    from ray import tune

    cfg = ProbeConfig(max_epochs=5, patience=5, batch_size=8, cpus_per_trial=0.5, intervals=False, lr=1e-2)
    layers = ["l0", "l1", "emb"]
    outcomes = run_sweep(source, "sid", cfg, layers=layers, storage_url=str(tmp_path / "tune"), name="per_layer",
                         space={"lr": 1e-2, "layer": tune.grid_search(layers)}, samples=1, scheduler=None, mode="max")
    by = pd.Series({o.config["layer"]: o.best_dev for o in outcomes})
    assert sorted(by.index) == sorted(layers)
    assert by["l1"] > by["l0"] + 0.3 and by["emb"] > by["l0"] + 0.3


def test_local_runner_matches_the_tune_grid_trial_for_trial(ray_session, source, tmp_path) -> None:
    """runner='local' runs the same trials in-process: identical configs, best dev metrics and epochs as Tune's grid."""
    from ray import tune

    from layerlab.probe.sweep import local_configs, run_local

    cfg = ProbeConfig(max_epochs=4, patience=4, batch_size=8, cpus_per_trial=1, intervals=False, lr=1e-2)
    layers = ["l0", "l1", "emb"]
    tuned = run_sweep(source, "sid", cfg, layers=layers, storage_url=str(tmp_path / "tune"), name="per_layer",
                      space={"lr": 1e-2, "layer": tune.grid_search(layers)}, samples=1, scheduler=None, mode="max")
    local = run_local(source, "sid", cfg, layers=layers, configs=local_configs(cfg, 1, 0, {"lr": 1e-2}, ("layer", layers)), name="per_layer")
    t = {o.config["layer"]: (o.best_dev, o.epochs) for o in tuned}
    loc = {o.config["layer"]: (o.best_dev, o.epochs) for o in local}
    assert t == loc and all(o.state is not None for o in local)
    assert not (tmp_path / "local").exists()


def test_local_configs_sample_the_search_space_with_a_seed() -> None:
    from layerlab.probe.sweep import local_configs

    cfg = ProbeConfig(search={"lr": (1e-4, 1e-2), "weight_decay": [0.0, 1e-4], "hidden": [16, 32]})
    a, b = local_configs(cfg, 5, seed=3), local_configs(cfg, 5, seed=3)
    assert a == b and len({c["lr"] for c in a}) == 5 and all(1e-4 <= c["lr"] <= 1e-2 for c in a)
    assert local_configs(cfg, 1, 0) == [{"lr": cfg.lr, "weight_decay": cfg.weight_decay, "hidden": cfg.hidden}]
    grid = local_configs(cfg, 1, 0, {"lr": 0.1}, ("layer", ["x", "y"]))
    assert grid == [{"lr": 0.1, "layer": "x"}, {"lr": 0.1, "layer": "y"}]


def test_run_probe_with_the_local_runner_reports_every_layer(source, tmp_path, monkeypatch) -> None:
    """The local runner's per-layer probes are evaluated and written like Tune's (a regression: they were trained, then dropped)."""
    import layerlab.probe.api as api

    monkeypatch.setattr(api, "open_source", lambda cache, **_: source)
    cfg = ProbeConfig(max_epochs=3, patience=3, batch_size=8, intervals=False, lr=1e-2)
    api.run_probe("planted", "sid", str(tmp_path / "out"), layers="both", runner="local", config=cfg)
    metrics = pd.read_parquet(tmp_path / "out" / "metrics.parquet")
    assert set(metrics["probe"]) == {"weighted_sum", "l0", "l1", "l2", "emb"}
    assert set(pd.read_parquet(tmp_path / "out" / "trials.parquet")["probe"]) == {"weighted_sum", "l0", "l1", "l2", "emb"}

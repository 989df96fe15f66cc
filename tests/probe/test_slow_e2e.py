"""Slow end-to-end probe checks: a killed sweep resumes; `ray job submit` of jobs/probe.py to a real local head."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers.ray_head import submit_and_wait
from test_cache_e2e import fbank_cache, tiny_corpus  # noqa: F401 - session fixtures shared with the fast e2e tests

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

SWEEP = """
import sys
from layerlab.probe import ProbeConfig, run_probe
cfg = ProbeConfig(max_epochs=1500, patience=1500, batch_size=2, cpus_per_trial=1, intervals=False, report_interval_s=0.5,
                  search={"lr": (1e-4, 1e-3), "weight_decay": [0.0], "hidden": [64]})
run_probe(sys.argv[1], "sid", sys.argv[2], layers="weighted", tune_samples=2, config=cfg, trust_tune_state=len(sys.argv) > 3)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO),
            "PATH": f"{BIN}:{os.environ['PATH']}"}


def _checkpoints(exp: Path) -> int:
    return sum(1 for _ in exp.glob("*/checkpoint_*")) if exp.is_dir() else 0


@pytest.mark.slow
def test_killed_sweep_resumes(fbank_cache: str, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "out"
    exp = out / "tune" / "weighted_sum"
    env = {**_env(), "RAY_ADDRESS": "local"}  # a fresh embedded Ray, never the test session's
    proc = subprocess.Popen([sys.executable, "-c", SWEEP, fbank_cache, str(out)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while _checkpoints(exp) < 4:  # both trials have reported checkpoints
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.time() < deadline, "no checkpoints appeared"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, its embedded Ray and every trial: a hard crash
        proc.wait()
    assert not (out / "metrics.parquet").exists()
    state = sorted(exp.glob("experiment_state-*.json"))
    assert state, "the killed sweep left no experiment state"
    # restoring Tune's pickled experiment state needs the caller's trust (this folder is the test's own)
    done = subprocess.run([sys.executable, "-c", SWEEP, fbank_cache, str(out), "trust"], env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) == 2 and trials.error.isna().all()
    assert (trials.epochs == 1500).all()  # the restored trials ran to the end (no early stopping configured)
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert (metrics.probe == "weighted_sum").all() and len(metrics) == 2


@pytest.mark.slow
def test_ray_job_submit_probe(fbank_cache: str, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "job-out"
    job = submit_and_wait(tmp_path, ["python", "jobs/probe.py", "--cache", fbank_cache, "--task", "sid", "--out", str(out),
                                     "--layers", "weighted", "--tune", "2"], timeout_s=400)
    assert job.ok, job.logs[-3000:]
    assert "test weighted_sum/accuracy" in job.logs
    assert len(pd.read_parquet(out / "trials.parquet")) == 2


@pytest.mark.slow
def test_probe_results_and_tune_storage_on_s3(fbank_cache: str, s3_bucket: str) -> None:  # noqa: F811
    from layerlab import storage
    from layerlab.probe import ProbeConfig, run_probe

    out = f"{s3_bucket}/probe/fbank-sid"
    cfg = ProbeConfig(max_epochs=5, patience=5, batch_size=8, cpus_per_trial=0.5, intervals=True)
    summary = run_probe(fbank_cache, "sid", out, layers="weighted", tune_samples=2, config=cfg)
    assert storage.exists(f"{out}/metrics.parquet") and storage.exists(f"{out}/figures/layer_weights.png")
    assert storage.list_files(f"{out}/tune/weighted_sum"), "Tune wrote no experiment state to S3"
    assert "weighted_sum/accuracy" in summary["test"]

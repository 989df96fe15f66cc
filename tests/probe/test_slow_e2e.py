"""Slow end-to-end probe checks: a killed sweep resumes; `ray job submit` of jobs/probe.py to a real local head."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from test_cache_e2e import fbank_cache, tiny_corpus  # noqa: F401 - session fixtures shared with the fast e2e tests

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

SWEEP = """
import sys
from layerlab.probe import ProbeConfig, run_probe
cfg = ProbeConfig(max_epochs=40, patience=40, batch_size=4, cpus_per_trial=1, intervals=False,
                  search={"lr": (1e-4, 1e-3), "weight_decay": [0.0], "hidden": [64]})
run_probe(sys.argv[1], "sid", sys.argv[2], layers="weighted", tune_samples=2, config=cfg)
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
    proc = subprocess.Popen([sys.executable, "-c", SWEEP, fbank_cache, str(out)], env=_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while _checkpoints(exp) < 2:  # both trials have reported at least one checkpoint
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.time() < deadline, "no checkpoints appeared"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, its embedded Ray and every trial: a hard crash
        proc.wait()
    assert not (out / "metrics.parquet").exists()
    state = sorted(exp.glob("experiment_state-*.json"))
    assert state, "the killed sweep left no experiment state"
    done = subprocess.run([sys.executable, "-c", SWEEP, fbank_cache, str(out)], env=_env(), capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) == 2 and trials.error.isna().all()
    assert (trials.epochs == 40).all()  # the restored trials ran to the end (no early stopping configured)
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert (metrics.probe == "weighted_sum").all() and len(metrics) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ray_job_submit_probe(fbank_cache: str, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "job-out"
    env = _env()
    gcs, dash, agent, agent_grpc, rt_agent, metrics_port = (_free_port() for _ in range(6))
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
         f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={rt_agent}",
         f"--metrics-export-port={metrics_port}", "--num-cpus=2", "--include-dashboard=true", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        from ray.job_submission import JobStatus, JobSubmissionClient

        deadline = time.time() + 120
        while True:
            try:
                client = JobSubmissionClient(f"http://127.0.0.1:{dash}")
                job_id = client.submit_job(
                    entrypoint=f"python jobs/probe.py --cache {fbank_cache} --task sid --out {out} --layers weighted --tune 2",
                    runtime_env={"working_dir": str(REPO), "excludes": [".venv", ".git", "runs", "*.pt", "tests", "benchmarks"],
                                 "env_vars": {"RAY_AUTH_MODE": "disabled"}},
                )
                break
            except Exception:  # dashboard not up yet, or its job agent not ready ("No available agent")
                if time.time() > deadline or head.poll() is not None:
                    raise
                time.sleep(2)
        deadline = time.time() + 400
        while (status := client.get_job_status(job_id)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
            assert time.time() < deadline, "job did not finish in time"
            time.sleep(2)
        logs = client.get_job_logs(job_id)
        assert status == JobStatus.SUCCEEDED, logs[-3000:]
        assert "test weighted_sum/accuracy" in logs
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        pointer = Path("/tmp/ray/ray_current_cluster")
        if pointer.exists() and pointer.read_text().strip().endswith(f":{gcs}"):
            pointer.unlink()
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

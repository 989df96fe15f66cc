"""`ray job submit` of jobs/extract.py against a real local head (`ray start --head --block`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.speech_corpus import build_corpus

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _forget_cluster(gcs_port: int) -> None:
    """Remove Ray's pointer to the head we started, so later `ray.init()` calls do not try to join it."""
    pointer = Path("/tmp/ray/ray_current_cluster")
    if pointer.exists() and pointer.read_text().strip().endswith(f":{gcs_port}"):
        pointer.unlink()


def _run_job(client, entrypoint: str) -> str:
    """Submit ``entrypoint`` with this repository as working dir, wait for it, assert success; its logs."""
    from ray.job_submission import JobStatus

    deadline = time.time() + 90
    while True:  # the dashboard answers before the head's job agent is ready ("No available agent")
        try:
            job_id = client.submit_job(
                entrypoint=entrypoint,
                runtime_env={"working_dir": str(REPO), "excludes": [".venv", ".git", "runs", "*.pt", "tests", "benchmarks"],
                             "env_vars": {"RAY_AUTH_MODE": "disabled"}},
            )
            break
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.time() > deadline:
                raise
            time.sleep(2)
    deadline = time.time() + 240
    while (status := client.get_job_status(job_id)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.time() < deadline, "job did not finish in time"
        time.sleep(2)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    return logs


@pytest.mark.slow
def test_ray_job_submit_extract(tmp_path: Path) -> None:
    from layerlab.cache import open_cache
    from layerlab.models import tiny

    data = str(tmp_path / "data")
    kept = build_corpus(data, utterances=8, short_ids=(), nan_ids=())
    ckpt = tiny.build_s3prl_wavlm(tmp_path / "wavlm.pt", seed=1)
    out = str(tmp_path / "cache")
    joint = str(tmp_path / "joint")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0"}
    # every port explicit: an embedded Ray of the same test session may hold the defaults (e.g. 52365)
    gcs, dash, agent, agent_grpc, rt_agent, metrics = (_free_port() for _ in range(6))
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dash}",
         "--dashboard-host=127.0.0.1", f"--dashboard-agent-listen-port={agent}",
         f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={rt_agent}", f"--metrics-export-port={metrics}",
         "--num-cpus=2", "--include-dashboard=true", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dash}"
    try:
        from ray.job_submission import JobSubmissionClient

        deadline = time.time() + 90
        while True:
            try:
                client = JobSubmissionClient(address)
                break
            except Exception:
                if time.time() > deadline or head.poll() is not None:
                    raise
                time.sleep(1)
        logs = _run_job(client, f"python jobs/extract.py --model s3prl:wavlm_local:{ckpt} --data {data} --out {out} --tier both --no-progress")
        assert "complete" in logs
        # a joint group through the same entry point and the same actor pool: one actor, two caches, one joint state
        logs = _run_job(client, f"python jobs/extract.py --model wavlm=s3prl:wavlm_local:{ckpt} --model fbank --data {data} --out {joint} --no-progress")
        assert "joint CKA state" in logs and "per shard" in logs
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        _forget_cluster(gcs)
    cache = open_cache(out)
    assert cache.manifest.complete and cache.manifest.kept == len(kept)
    for name in ("wavlm", "fbank"):
        member = open_cache(f"{joint}/{name}")
        assert member.manifest.complete and member.manifest.kept == len(kept)
    assert open_cache(f"{joint}/wavlm").cka_states("joint-fbank")

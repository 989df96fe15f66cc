"""`ray job submit --working-dir .` of jobs/study.py against a real local head: a tiny study, SUCCEEDED, outputs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from study_fixtures import tiny_study

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


@pytest.mark.slow
def test_ray_job_submit_runs_a_tiny_study(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_study(cka={"within": None, "across": {"levels": ["utterance"]}})))
    out = tmp_path / "study"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    head_log = open(tmp_path / "head.log", "wb")  # noqa: SIM115 - closed in finally
    gcs, dash, agent, agent_grpc, rt_agent, metrics = (_free_port() for _ in range(6))
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dash}",
         "--dashboard-host=127.0.0.1", f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--runtime-env-agent-port={rt_agent}", f"--metrics-export-port={metrics}", "--num-cpus=2", "--include-dashboard=true",
         "--disable-usage-stats"],
        env=env, stdout=head_log, stderr=subprocess.STDOUT, start_new_session=True,  # own process group
    )
    address = f"http://127.0.0.1:{dash}"
    submission = f"study-{int(time.time())}"
    try:
        deadline = time.time() + 300  # a loaded 2-core machine can take minutes to bring the dashboard up
        while True:  # the dashboard answers before the head's job agent is ready ("No available agent")
            submit = subprocess.run(
                [str(BIN / "ray"), "job", "submit", "--address", address, "--submission-id", submission, "--no-wait",
                 "--working-dir", ".", "--runtime-env-json",
                 json.dumps({"excludes": [".venv", ".git", "runs", "*.pt", "tests", "benchmarks"], "env_vars": {"RAY_AUTH_MODE": "disabled"}}),
                 "--", "python", "jobs/study.py", str(config), "--out", str(out)],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
            )
            if submit.returncode == 0:
                break
            assert head.poll() is None, f"ray start --head exited: {(tmp_path / 'head.log').read_text()[-3000:]}"
            assert time.time() < deadline, submit.stderr[-2000:]
            time.sleep(2)
        from ray.job_submission import JobStatus, JobSubmissionClient

        client = JobSubmissionClient(address)
        deadline = time.time() + 600
        while (status := client.get_job_status(submission)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
            assert time.time() < deadline, "study job did not finish in time"
            time.sleep(3)
        logs = client.get_job_logs(submission)
        assert status == JobStatus.SUCCEEDED, logs[-3000:]
        assert "report: " in logs and "0 failed" in logs
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGTERM)
            try:
                head.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
        head_log.close()
        _forget_cluster(gcs)
    run = json.loads((out / "run.json").read_text())
    assert run["failed"] == [] and {"corpus/synth", "extract/synth/fbank", "extract/synth/mfcc", "report"} <= set(run["computed"])
    page = (out / "report" / "index.html").read_text()
    assert "data-model='fbank'" in page and "data-model='mfcc'" in page
    assert (out / "cache" / "synth" / "fbank" / "manifest.json").exists()

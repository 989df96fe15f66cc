"""A real local Ray head for `ray job submit` tests: start it on free ports, submit a job, wait for it, stop the head.

Used by the slow job-submit tests of extract, probe, train and study. The head runs in its own process
group (stopped with SIGTERM, then SIGKILL), logs to ``<workdir>/head.log``, and Ray's pointer to it is
removed afterwards so a later ``ray.init()`` of the same test session does not try to join it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
#: what the job's working-dir upload leaves out (the venv, caches, checkpoints, tests)
EXCLUDES = [".venv", ".git", "runs", "*.pt", "tests", "benchmarks"]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def head_env() -> dict[str, str]:
    """The environment of the head and of `ray job submit`: no auth, no usage stats, this checkout first on the path."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO),
           "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    return env


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class JobResult:
    """A finished job: its final status (``SUCCEEDED``, ``FAILED``, ``STOPPED``) and its logs."""

    status: str
    logs: str

    @property
    def ok(self) -> bool:
        return self.status == "SUCCEEDED"


@dataclass
class RayHead:
    """A running head: its dashboard address (for job submission) and GCS port."""

    address: str
    gcs_port: int
    process: subprocess.Popen
    log: Path

    def head_log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def submit(self, entrypoint: Sequence[str], *, via_cli: bool = False, start_timeout_s: float = 300) -> str:
        """Submit ``entrypoint`` with this checkout as the working dir; returns the submission id.

        Retries until the head accepts jobs: the dashboard answers before its job agent is ready
        ("No available agent"), and a loaded 2-core machine can take minutes for both.
        ``via_cli`` submits with the `ray job submit --working-dir .` command line instead of the Python client.
        """
        runtime_env = {"excludes": EXCLUDES, "env_vars": {"RAY_AUTH_MODE": "disabled"}}
        submission = f"test-{int(time.time() * 1000)}"
        deadline = time.time() + start_timeout_s
        while True:
            error = self._try_submit(list(entrypoint), runtime_env, submission, via_cli)
            if error is None:
                return submission
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start --head exited: {self.head_log_tail()}")
            if time.time() > deadline:
                raise TimeoutError(f"the head did not accept the job in {start_timeout_s:.0f} s: {error[-2000:]}")
            time.sleep(2)

    def _try_submit(self, entrypoint: list[str], runtime_env: dict, submission: str, via_cli: bool) -> str | None:
        if via_cli:
            done = subprocess.run(
                [str(BIN / "ray"), "job", "submit", "--address", self.address, "--submission-id", submission, "--no-wait",
                 "--working-dir", ".", "--runtime-env-json", json.dumps(runtime_env), "--", *entrypoint],
                cwd=REPO, env=head_env(), capture_output=True, text=True, timeout=120,
            )
            return None if done.returncode == 0 else done.stderr
        from ray.job_submission import JobSubmissionClient

        try:
            JobSubmissionClient(self.address).submit_job(entrypoint=" ".join(entrypoint), submission_id=submission,
                                                         runtime_env={"working_dir": str(REPO), **runtime_env})
        except Exception as exc:  # noqa: BLE001 - dashboard not up yet, or its job agent not ready
            return f"{type(exc).__name__}: {exc}"
        return None

    def wait(self, submission: str, timeout_s: float) -> JobResult:
        """Poll the job until it ends; TimeoutError (with the log tail) when it runs past ``timeout_s``."""
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(self.address)
        deadline = time.time() + timeout_s
        while (status := str(client.get_job_status(submission).value)) not in TERMINAL:
            if time.time() > deadline:
                raise TimeoutError(f"job {submission} did not finish in {timeout_s:.0f} s: {client.get_job_logs(submission)[-3000:]}")
            time.sleep(2)
        return JobResult(status, client.get_job_logs(submission))


@contextlib.contextmanager
def local_ray_head(workdir: Path, num_cpus: int = 2) -> Iterator[RayHead]:
    """Start `ray start --head --block` on free ports (an embedded Ray of the same session may hold the defaults); stop it on exit."""
    gcs, dash, agent, agent_grpc, rt_agent, metrics = (free_port() for _ in range(6))
    log = Path(workdir) / "head.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
             f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={rt_agent}",
             f"--metrics-export-port={metrics}", f"--num-cpus={num_cpus}", "--include-dashboard=true", "--disable-usage-stats"],
            env=head_env(), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,  # own process group
        )
    try:
        yield RayHead(f"http://127.0.0.1:{dash}", gcs, process, log)
    finally:
        stop_head(process)
        forget_cluster(gcs)


def stop_head(process: subprocess.Popen) -> None:
    """SIGTERM the head's process group, SIGKILL it if it is still there a minute later."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def forget_cluster(gcs_port: int) -> None:
    """Remove Ray's pointer to the head we started, so later `ray.init()` calls do not try to join it."""
    pointer = Path("/tmp/ray/ray_current_cluster")
    if pointer.exists() and pointer.read_text().strip().endswith(f":{gcs_port}"):
        pointer.unlink()


def submit_and_wait(workdir: Path, entrypoint: Sequence[str], *, timeout_s: float, via_cli: bool = False) -> JobResult:
    """Start a head, submit ``entrypoint`` (e.g. ``["python", "jobs/extract.py", ...]``), wait for it, stop the head."""
    with local_ray_head(workdir) as head:
        submission = head.submit(entrypoint, via_cli=via_cli)
        return head.wait(submission, timeout_s)

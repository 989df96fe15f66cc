"""Ray's fake multi-node autoscaler as a context manager: a 0-CPU head plus up to N {CPU:1, GPU:1} workers.

Started in its own session and stopped by SIGKILL to that process group only (never ``ray stop``),
as verified in shared/notes/train-and-tune.md section 7.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def autoscaling_config(port: int, *, worker_resources: dict[str, float], max_workers: int, min_workers: int = 0) -> dict:
    """The fake_multinode autoscaling config: head with 0 CPUs, one worker type, ``min_workers`` (default 0) kept up."""
    return {
        "cluster_name": "fake", "max_workers": max_workers, "upscaling_speed": 1.0, "idle_timeout_minutes": 1,
        "provider": {"type": "fake_multinode", "gcs_address": f"127.0.0.1:{port}",
                     # no SSH updater for in-process fake nodes (under load it runs and fails the launch)
                     "disable_node_updaters": True, "disable_launch_config_check": True},
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "worker_node": {"resources": worker_resources, "node_config": {}, "min_workers": min_workers, "max_workers": max_workers},
        },
        "head_node_type": "ray.head.default",
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [], "setup_commands": [],
        "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def fake_env() -> dict[str, str]:
    """Environment for the head and for drivers that talk to it."""
    return {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_AUTH_MODE": "disabled",
            "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
            # fake worker raylets wait for their dashboard agent; on a loaded machine the default 30 s is too short
            "RAY_agent_register_timeout_ms": "180000"}


@contextmanager
def fake_cluster(tmp: Path, *, worker_resources: dict[str, float] | None = None, max_workers: int = 2,
                 ready_timeout: float = 60.0, min_workers: int = 0) -> Iterator[str]:
    """Start the head, yield its address (``127.0.0.1:PORT``), then kill its whole process group.

    Ray's pointer to the head (``/tmp/ray/ray_current_cluster``) is removed afterwards when it names this head.
    """
    for attempt in range(3):  # a loaded machine can miss Ray's fixed 30 s node start-up wait: retry the head
        port, head = _start_head(tmp, worker_resources or {"CPU": 1, "GPU": 1}, max_workers, ready_timeout, min_workers)
        if head is not None:
            break
    else:
        raise RuntimeError(f"fake Ray head did not start in 3 attempts: {(tmp / 'head.log').read_text()[-2000:]}")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        _kill_group(head)
        pointer = Path("/tmp/ray/ray_current_cluster")
        if pointer.exists() and pointer.read_text().strip().endswith(f":{port}"):
            pointer.unlink()


def _kill_group(head: subprocess.Popen) -> None:
    """SIGTERM, a short grace period, then SIGKILL to the head's process group (fake worker nodes included)."""
    try:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    head.wait(timeout=10)


def _start_head(tmp: Path, worker_resources: dict[str, float], max_workers: int,
                ready_timeout: float, min_workers: int = 0) -> tuple[int, subprocess.Popen | None]:
    """Start one head in its own session; (port, process) or (port, None) after killing a failed start."""
    port = _free_port()
    cfg = tmp / "autoscaling.json"
    cfg.write_text(json.dumps(autoscaling_config(port, worker_resources=worker_resources, max_workers=max_workers, min_workers=min_workers)))
    ray_bin = str(Path(sys.executable).with_name("ray"))
    with open(tmp / "head.log", "wb") as log:
        head = subprocess.Popen(
            [ray_bin, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=0",
             f"--autoscaling-config={cfg}", "--include-dashboard=false", "--disable-usage-stats"],
            env=fake_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline and head.poll() is None:
        if b"Ray runtime started" in (tmp / "head.log").read_bytes():
            return port, head
        time.sleep(0.5)
    _kill_group(head)
    return port, None

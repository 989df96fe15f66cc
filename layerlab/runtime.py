"""Ray start-up, the environment every Ray worker needs, and the compute-device choice: one place each.

``init_ray`` respects ``RAY_ADDRESS`` (a cluster) and otherwise starts an embedded local Ray;
``worker_env`` is the ``runtime_env["env_vars"]`` for extraction actors, the CKA reducer, Tune
trials and Train workers alike (object-store endpoint and credentials, offline flags, threads).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping

#: environment passed to every Ray worker when set in the driver
FORWARDED_ENV = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
    "GOOGLE_APPLICATION_CREDENTIALS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "LAYERLAB_CACHE",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "LAYERLAB_IO_AUDIT",
    "LAYERLAB_STAGE",
)


def worker_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Env vars for Ray workers: the forwarded driver settings (when set) plus ``extra``."""
    env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    env.update({str(k): str(v) for k, v in (extra or {}).items()})
    return env


def runtime_env(extra: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A Ray ``runtime_env`` carrying :func:`worker_env` (for ``.options(runtime_env=...)``, Tune, Train)."""
    return {"env_vars": worker_env(extra)}


class RayStartError(RuntimeError):
    """Ray could not be started or joined: one line with the reason and where Ray's logs are."""


def ray_log_dir(temp_dir: str | None = None) -> str:
    """Where the Ray session this process starts (or joins on this node) writes its logs."""
    try:
        from ray._common.utils import get_default_ray_temp_dir

        root = temp_dir or get_default_ray_temp_dir()
    except ImportError:  # pragma: no cover - another Ray layout
        root = temp_dir or os.path.join(os.environ.get("RAY_TMPDIR", "/tmp"), "ray")
    return os.path.join(root, "session_latest", "logs")


def quiet_console() -> None:
    """No colour codes in forwarded worker lines when the output is not a terminal (logs, pipes, `ray job submit`)."""
    if not (sys.stdout.isatty() and sys.stderr.isatty()):
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")


def init_ray(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = False, **kwargs: Any) -> None:
    """Start or join Ray once: ``address`` or ``RAY_ADDRESS`` joins a cluster; otherwise an embedded local Ray.

    A failure to start (a busy machine, a wrong address) is a RayStartError in one line naming Ray's log folder.
    """
    import ray

    if ray.is_initialized():
        return
    quiet_console()
    # "local", never None: Ray's None joins whatever cluster /tmp/ray/ray_current_cluster names (another user's, or a dead one)
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    options: dict[str, Any] = dict(kwargs)
    if quiet:
        options.setdefault("configure_logging", False)
        options.setdefault("log_to_driver", False)
    if address == "local":
        # Ray starts workers at nice 15 so a driver stays responsive; an embedded study's stage tasks, actors and
        # Train workers would otherwise compete with other processes at a lower priority. Equal priority here; a
        # user's RAY_worker_niceness wins.
        os.environ.setdefault("RAY_worker_niceness", "0")
        options.setdefault("include_dashboard", False)
        if num_cpus is not None:
            options["num_cpus"] = num_cpus
    try:
        ray.init(address=address, **options)
    except Exception as exc:  # noqa: BLE001 - every start-up failure becomes one line with where to look
        text = " ".join(str(exc).split()) or type(exc).__name__
        where = f" at {address}" if address not in (None, "local") else ""
        raise RayStartError(f"Ray did not start{where}: {type(exc).__name__}: {text[:300]} (Ray logs: "
                            f"{ray_log_dir(options.get('_temp_dir'))})") from exc


def pick_device(requested: Any = "auto") -> Any:
    """``torch.device`` for a user's choice: ``auto``/None -> cuda when a GPU is visible, else cpu."""
    import torch

    if requested is None or str(requested) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {requested!r} requested but no CUDA device is visible")
    return device

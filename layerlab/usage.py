"""Where work ran and what it cost: per-process CPU seconds, GPU seconds held, node, peak memory.

Every unit of a stage's work (the stage task itself, a model actor, a CKA shard task, a Tune trial)
measures itself with :class:`Meter` and hands back one plain dict (:func:`unit`); the study records
the units of each stage and :func:`summarize` folds them per node. CPU time is the process's own
(all threads, ``time.process_time``) plus its waited-for children; GPU seconds are the wall time a
unit held GPUs times their number (a fake GPU on a test cluster counts the same).
"""

from __future__ import annotations

import os
import resource
import socket
import time
from typing import Any, Iterable


def here() -> dict[str, Any]:
    """This process: Ray node id and IP when inside Ray (else the host name), and pid."""
    node_id, node_ip = "", ""
    try:
        import ray

        if ray.is_initialized():
            node_id = str(ray.get_runtime_context().get_node_id() or "")
            node_ip = str(ray.util.get_node_ip_address())
    except Exception:  # noqa: BLE001 - outside Ray (or a driver without a node of its own)
        pass
    return {"node_id": node_id, "node_ip": node_ip or socket.gethostname(), "pid": os.getpid()}


def cpu_now() -> float:
    """CPU seconds of this process (every thread) and of its finished, waited-for child processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class Meter:
    """Measures one unit of work from construction to :meth:`unit`."""

    def __init__(self) -> None:
        self.cpu0 = cpu_now()
        self.wall0 = time.perf_counter()

    def unit(self, role: str, gpus: float = 0.0, **extra: Any) -> dict[str, Any]:
        """The unit record: role, node, pid, CPU and wall seconds, GPU seconds, peak RSS."""
        wall = time.perf_counter() - self.wall0
        return unit(role, cpu_seconds=cpu_now() - self.cpu0, wall_seconds=wall, gpu_seconds=wall * gpus,
                    peak_rss_bytes=peak_rss_bytes(), **extra)


def unit(role: str, *, cpu_seconds: float, wall_seconds: float, gpu_seconds: float = 0.0, peak_rss_bytes: int = 0,
         **where: Any) -> dict[str, Any]:
    """One usage record; ``where`` overrides the node/pid of this process (e.g. an actor's, reported by the actor)."""
    rec = {**here(), **where}
    rec.update(role=role, cpu_seconds=round(float(cpu_seconds), 3), wall_seconds=round(float(wall_seconds), 3),
               gpu_seconds=round(float(gpu_seconds), 3), peak_rss_bytes=int(peak_rss_bytes))
    return rec


def node_key(rec: dict[str, Any]) -> str:
    """A node's name in summaries: ``IP/last 8 characters of the Ray node id``."""
    return f"{rec.get('node_ip') or '?'}/{str(rec.get('node_id') or '')[-8:]}"


def summarize(units: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Totals and per-node sums (CPU s, GPU s, roles, peak RSS) of usage records."""
    units = list(units)
    nodes: dict[str, dict[str, Any]] = {}
    for u in units:
        n = nodes.setdefault(node_key(u), {"node_id": u.get("node_id") or "", "cpu_seconds": 0.0, "gpu_seconds": 0.0, "roles": [],
                                           "peak_rss_bytes": 0})
        n["cpu_seconds"] = round(n["cpu_seconds"] + float(u.get("cpu_seconds") or 0), 3)
        n["gpu_seconds"] = round(n["gpu_seconds"] + float(u.get("gpu_seconds") or 0), 3)
        n["peak_rss_bytes"] = max(n["peak_rss_bytes"], int(u.get("peak_rss_bytes") or 0))
        if u.get("role") not in n["roles"]:
            n["roles"].append(u.get("role"))
    return {"cpu_seconds": round(sum(float(u.get("cpu_seconds") or 0) for u in units), 3),
            "gpu_seconds": round(sum(float(u.get("gpu_seconds") or 0) for u in units), 3),
            "nodes": nodes, "units": units}

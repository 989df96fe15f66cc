"""Where model actors run and how big they are: decided from the request and the autoscaler's node types.

Pure arithmetic (testable without GPUs) plus :func:`autoscaler_node_types`, which reads the node
types an autoscaling cluster *can* launch, so ``--device auto`` picks GPUs on a cluster that starts
with no GPU node. The pool requests actors of this size whether or not they fit now: pending actors
are what Ray's autoscaler scales on.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from layerlab.extract.config import ExtractConfig

log = logging.getLogger(__name__)

#: env var naming an autoscaling config file (YAML/JSON) when Ray does not expose one
AUTOSCALING_CONFIG_ENV = "LAYERLAB_AUTOSCALING_CONFIG"
#: where `ray up` puts the cluster config on the head node
BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")

NodeTypes = dict[str, dict[str, float]]


@dataclass(frozen=True)
class ActorResources:
    """Per-actor Ray resources, pool bounds, the torch thread count inside each actor and why."""

    num_cpus: float
    num_gpus: float
    min_actors: int
    max_actors: int
    torch_threads: int
    rule: str = "requested"
    placement_timeout_s: float = 600.0
    node_types: NodeTypes | None = field(default=None, compare=False)

    @property
    def uses_gpu(self) -> bool:
        """True when actors are pinned to GPUs."""
        return self.num_gpus > 0

    @property
    def bundle(self) -> dict[str, float]:
        """The resource shape of one actor, as the autoscaler sees it."""
        out = {"CPU": self.num_cpus}
        if self.num_gpus > 0:
            out["GPU"] = self.num_gpus
        return out


def decide_gpu(device: str, cluster_gpus: float, node_types: NodeTypes | None) -> tuple[bool, str]:
    """(use GPUs, the rule that decided) for ``device`` in cuda|cpu|auto."""
    if device == "cuda":
        return True, "--device cuda requested"
    if device == "cpu":
        return False, "--device cpu requested"
    if node_types is not None:
        gpu_types = sorted(n for n, r in node_types.items() if float(r.get("GPU", 0)) > 0)
        if gpu_types:
            return True, f"auto: the autoscaler can launch GPU node types {gpu_types}"
        if cluster_gpus > 0:
            return True, f"auto: the cluster has {cluster_gpus:g} GPUs (no autoscaler GPU node type)"
        return False, f"auto: no GPU in the cluster and no autoscaler node type offers one ({sorted(node_types)})"
    if cluster_gpus > 0:
        return True, f"auto: the cluster has {cluster_gpus:g} GPUs at start (no autoscaler node types visible)"
    return False, "auto: no GPU in the cluster at start and no autoscaler node types visible"


def plan_resources(cluster: Mapping[str, float], config: ExtractConfig, node_types: NodeTypes | None = None) -> ActorResources:
    """Actor size from the request: GPUs per :func:`decide_gpu`; CPUs explicit, else 1 (GPU) or CPUs / max actors.

    ``cluster`` is the cluster's total resources now (used only for ``auto`` without node types and
    for the CPU split of CPU-only actors); ``node_types`` what an autoscaler can launch, if known.
    """
    lo, hi = config.concurrency
    device = config.device or "auto"
    use_gpu, rule = decide_gpu(device, float(cluster.get("GPU", 0.0)), node_types)
    if use_gpu and config.num_gpus_per_actor <= 0:
        use_gpu, rule = False, rule + "; but num_gpus_per_actor is 0"
    cpus = float(cluster.get("CPU", 0.0))
    if use_gpu:
        num_gpus = config.num_gpus_per_actor
        num_cpus = config.num_cpus_per_actor if config.num_cpus_per_actor is not None else 1.0
    else:
        num_gpus = 0.0
        num_cpus = config.num_cpus_per_actor if config.num_cpus_per_actor is not None else max(1.0, math.floor(cpus / hi))
    return ActorResources(num_cpus=num_cpus, num_gpus=num_gpus, min_actors=lo, max_actors=hi,
                          torch_threads=max(1, int(num_cpus)), rule=rule,
                          placement_timeout_s=config.placement_timeout_s, node_types=node_types)


def fits(bundle: Mapping[str, float], resources: Mapping[str, float]) -> bool:
    """Whether one node with ``resources`` can hold ``bundle``."""
    return all(float(resources.get(k, 0.0)) + 1e-9 >= v for k, v in bundle.items() if v > 0)


def infeasible_reason(res: ActorResources, nodes: list[Mapping[str, float]]) -> str | None:
    """Why no node now or launchable could ever hold one actor (None when some could, or when unknown)."""
    if any(fits(res.bundle, n) for n in nodes):
        return None
    if res.node_types is None:
        return None  # an unknown autoscaler may still add a fitting node: the bounded wait decides
    if any(fits(res.bundle, r) for r in res.node_types.values()):
        return None
    shapes = {n: dict(r) for n, r in res.node_types.items()}
    return f"no live node and no autoscaler node type can hold an actor of {res.bundle} (node types: {shapes})"


def can_grow(available: Mapping[str, float], res: ActorResources, actors: int, queued: int) -> bool:
    """Whether one more actor is useful and fits the free resources now (for fixed clusters; the pool requests regardless)."""
    if actors >= res.max_actors or queued <= 0:
        return False
    return fits(res.bundle, available)


def _types_from_doc(doc: Mapping) -> NodeTypes | None:
    types = doc.get("available_node_types")
    if not isinstance(types, Mapping):
        return None
    out: NodeTypes = {}
    for name, spec in types.items():
        if isinstance(spec, Mapping) and (spec.get("max_workers", 1) or name == doc.get("head_node_type")):
            out[str(name)] = {str(k): float(v) for k, v in (spec.get("resources") or {}).items()}
    return out


def _read_config_file(path: Path) -> NodeTypes | None:
    import yaml

    text = path.read_text()
    doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return _types_from_doc(doc or {})


def _monitor_config_path(gcs_address: str | None) -> Path | None:
    """The ``--autoscaling-config`` of the autoscaler monitor of this cluster, when it runs on this node."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in args if a]
        if not any(a.endswith("autoscaler/_private/monitor.py") for a in argv):
            continue
        opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
        if gcs_address and opts.get("gcs-address") not in (None, gcs_address):
            continue
        if opts.get("autoscaling-config"):
            return Path(opts["autoscaling-config"])
    return None


def autoscaler_node_types(gcs_address: str | None = None) -> tuple[NodeTypes | None, str]:
    """Node types the cluster's autoscaler can launch, and where they came from (None when no autoscaler is visible).

    Looked up in order: the cluster config in the GCS (autoscaler v2, KubeRay), the file named by
    ``LAYERLAB_AUTOSCALING_CONFIG``, the running monitor's ``--autoscaling-config`` on this node,
    ``~/ray_bootstrap_config.yaml`` (a ``ray up`` head).
    """
    try:
        import ray._private.state as ray_state

        cfg = ray_state.state.get_cluster_config()
        if cfg is not None and cfg.node_group_configs:
            types = {g.name or f"group{i}": {k: float(v) for k, v in g.resources.items()}
                     for i, g in enumerate(cfg.node_group_configs) if g.max_count != 0}
            return types, "the GCS cluster config"
    except Exception as exc:  # noqa: BLE001 - not connected or an older/newer Ray: fall through
        log.debug("no GCS cluster config: %s", exc)
    candidates: list[tuple[Path | None, str]] = [
        (Path(os.environ[AUTOSCALING_CONFIG_ENV]) if os.environ.get(AUTOSCALING_CONFIG_ENV) else None, f"${AUTOSCALING_CONFIG_ENV}"),
        (_monitor_config_path(gcs_address), "the autoscaler monitor's --autoscaling-config"),
        (BOOTSTRAP_CONFIG.expanduser(), str(BOOTSTRAP_CONFIG)),
    ]
    for path, source in candidates:
        if path is None or not path.is_file():
            continue
        try:
            types = _read_config_file(path)
        except Exception as exc:  # noqa: BLE001 - unreadable config: say so and go on
            log.warning("autoscaling config %s unreadable: %s", path, exc)
            continue
        if types is not None:
            return types, f"{source} ({path})"
    return None, "none visible"

"""How big each model actor is and when the pool may grow: pure resource arithmetic (testable without GPUs)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from layerlab.extract.config import ExtractConfig


@dataclass(frozen=True)
class ActorResources:
    """Per-actor Ray resources, pool bounds and the torch thread count inside each actor."""

    num_cpus: float
    num_gpus: float
    min_actors: int
    max_actors: int
    torch_threads: int

    @property
    def uses_gpu(self) -> bool:
        """True when actors are pinned to GPUs."""
        return self.num_gpus > 0


def plan_resources(cluster: Mapping[str, float], config: ExtractConfig) -> ActorResources:
    """Actors get ``num_gpus_per_actor`` GPUs when the cluster has GPUs, otherwise CPUs only.

    CPU counts are always explicit (a GPU actor with Ray's default would starve readers on small
    nodes). Without GPUs and without an explicit ``num_cpus_per_actor``, the cluster's CPUs are
    split evenly over the maximum number of actors.
    """
    lo, hi = config.concurrency
    gpus = float(cluster.get("GPU", 0.0))
    cpus = float(cluster.get("CPU", 1.0))
    if gpus > 0 and config.num_gpus_per_actor > 0:
        num_gpus = config.num_gpus_per_actor
        num_cpus = config.num_cpus_per_actor if config.num_cpus_per_actor is not None else 1.0
    else:
        num_gpus = 0.0
        num_cpus = config.num_cpus_per_actor if config.num_cpus_per_actor is not None else max(1.0, math.floor(cpus / hi))
    return ActorResources(num_cpus=num_cpus, num_gpus=num_gpus, min_actors=lo, max_actors=hi, torch_threads=max(1, int(num_cpus)))


def can_grow(available: Mapping[str, float], res: ActorResources, actors: int, queued: int) -> bool:
    """Whether one more actor is useful (work is queued beyond the actors) and fits the free resources."""
    if actors >= res.max_actors or queued <= 0:
        return False
    if float(available.get("CPU", 0.0)) + 1e-9 < res.num_cpus:
        return False
    return float(available.get("GPU", 0.0)) + 1e-9 >= res.num_gpus

"""Model actors on Ray and the autoscaling pool that feeds them one shard task at a time.

Actors restart when they die (``max_restarts=-1``) and Ray retries the shard they held
(``max_task_retries``); the pool grows from min to max actors while shards are queued and the
cluster has free resources, one actor at a time.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import ray

from layerlab.extract.config import ExtractConfig
from layerlab.extract.resources import ActorResources, can_grow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardTask:
    """One audio shard to extract."""

    url: str
    name: str
    sha256: str


class ExtractActor:
    """Ray actor body: loads the model once, then extracts shards on request."""

    def __init__(self, model_spec: str, config_json: str, torch_threads: int) -> None:
        import torch

        from layerlab.extract.config import resolve_mode
        from layerlab.extract.shard_worker import ShardExtractor
        from layerlab.models import load

        torch.set_num_threads(torch_threads)
        config = ExtractConfig.model_validate_json(config_json)
        self.model = load(model_spec, config.device)
        self.mode = resolve_mode(config.mode, bool(self.model.padding_invariant))
        self.worker = ShardExtractor(self.model, config, self.mode)
        self.model(torch.zeros(1, self.model.sample_rate), torch.tensor([self.model.sample_rate]))  # warm-up call

    def describe(self) -> dict[str, Any]:
        """Static model facts for the cache metadata, plus the resolved mode and this process."""
        from layerlab.extract.shard_worker import describe_model

        return {**describe_model(self.model, self.mode), "pid": os.getpid()}

    def run_shard(self, task: ShardTask, out_url: str, shifts: dict[str, Any]) -> Any:
        """Extract one shard (see ShardExtractor.run); the outcome carries this worker's pid."""
        import resource

        outcome = self.worker.run(task.url, task.name, task.sha256, out_url, shifts)
        outcome.stats["pid"] = float(os.getpid())
        outcome.stats["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return outcome

    def pilot_shifts(self, source_url: str) -> dict[str, Any]:
        """Shared FeatureCKA shifts computed from the first utterances of ``source_url``."""
        return self.worker.pilot_shifts(source_url)


class ModelActorPool:
    """An autoscaling pool of :class:`ExtractActor` (min..max) with per-actor Ray resources."""

    def __init__(self, model_spec: str, config: ExtractConfig, res: ActorResources, env_vars: dict[str, str]) -> None:
        self.res = res
        options: dict[str, Any] = {
            "num_cpus": res.num_cpus, "num_gpus": res.num_gpus, "max_restarts": -1,
            "max_task_retries": config.task_retries,
        }
        if env_vars:
            options["runtime_env"] = {"env_vars": dict(env_vars)}
        self._cls = ray.remote(ExtractActor).options(**options)
        self._args = (model_spec, config.model_dump_json(), res.torch_threads)
        self.actors: list[Any] = []
        self.busy: dict[Any, ShardTask] = {}  # actor -> task in flight
        self._growing: Any = None
        for _ in range(res.min_actors):
            self._add_actor()

    def _add_actor(self) -> Any:
        actor = self._cls.remote(*self._args)
        self.actors.append(actor)
        return actor

    def busy_actors(self) -> list[Any]:
        """Actors that hold a shard task right now (what a fault test kills)."""
        return list(self.busy)

    def _maybe_grow(self, queued: int) -> None:
        if self._growing is not None:
            done, _ = ray.wait([self._growing], timeout=0)
            if not done:
                return
            self._growing = None
        if can_grow(ray.available_resources(), self.res, len(self.actors), queued):
            actor = self._add_actor()
            self._growing = actor.describe.remote()
            log.info("extract pool: grew to %d actors", len(self.actors))

    def run(
        self,
        tasks: list[ShardTask],
        out_url: str,
        shifts: dict[str, Any],
        on_result: Callable[[ShardTask, Any], None],
        on_error: Callable[[ShardTask, BaseException], None],
        after_dispatch: Callable[[ShardTask, "ModelActorPool"], None] | None = None,
    ) -> None:
        """Run every task on the pool; callbacks see each result (or final error) in completion order."""
        queue = deque(tasks)
        idle = list(self.actors)
        in_flight: dict[Any, tuple[Any, ShardTask]] = {}

        def dispatch() -> None:
            while queue and idle:
                actor, task = idle.pop(0), queue.popleft()
                in_flight[actor.run_shard.remote(task, out_url, shifts)] = (actor, task)
                self.busy[actor] = task

        while queue or in_flight:
            self._maybe_grow(len(queue) - len(idle))
            idle.extend(a for a in self.actors if a not in idle and a not in self.busy)
            dispatch()
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            finished: list[ShardTask] = []
            for ref in ready:
                actor, task = in_flight.pop(ref)
                del self.busy[actor]
                idle.append(actor)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the shard failed even after Ray's retries
                    on_error(task, exc)
                else:
                    on_result(task, outcome)
                finished.append(task)
            dispatch()  # hand out work before the hook runs, so a hook sees busy actors
            for task in finished:
                if after_dispatch is not None:
                    after_dispatch(task, self)

    def shutdown(self) -> None:
        """Kill every actor (no restart)."""
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors.clear()

"""Model actors on Ray and the autoscaling pool that feeds them one shard task at a time.

Actors restart when they die (``max_restarts=-1``) and Ray retries the shard they held
(``max_task_retries``). The pool *requests* up to MAX actors while shards are queued, whether or not
the cluster has room now: a pending actor is the demand Ray's autoscaler adds nodes for. Work goes
only to actors that are up; idle actors above MIN (and still-pending ones) are released when the
queue drains so the autoscaler can scale down. Every placement and release is recorded with the
node and the GPUs the actor holds. Each actor takes up to ``tasks_per_actor`` shards at once (a
threaded actor): one holds the model while the next decodes ahead and the previous publishes its files.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import ray

from layerlab.extract.config import ExtractConfig
from layerlab.extract.resources import ActorResources, infeasible_reason

log = logging.getLogger(__name__)


class PlacementError(ValueError):
    """No model actor could be placed: the request can never be met (or was not in time); a one-line user error."""


@dataclass(frozen=True)
class ShardTask:
    """One audio shard to extract."""

    url: str
    name: str
    sha256: str


def actor_device(requested: str | None) -> str:
    """The torch device inside an actor: cuda when it holds a GPU Ray assigned and CUDA sees it, else cpu."""
    import torch

    gpu_ids = ray.get_gpu_ids() if ray.is_initialized() else []
    if gpu_ids and torch.cuda.is_available():
        return "cuda"
    if gpu_ids:
        log.warning("actor holds GPU %s but CUDA sees no device (a fake or misconfigured node): running on cpu", gpu_ids)
    elif requested == "cuda" and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def placement() -> dict[str, Any]:
    """Where this actor process runs: node id and IP, the GPU ids Ray assigned, pid."""
    ctx = ray.get_runtime_context()
    return {"node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "pid": os.getpid()}


def actor_usage(born: tuple[float, float]) -> dict[str, Any]:
    """This actor's usage so far: where it runs, CPU and wall seconds since it was created, GPUs held, peak RSS."""
    import resource

    return {**placement(), "cpu_seconds": time.process_time() - born[0], "wall_seconds": time.time() - born[1],
            "gpus": len(ray.get_gpu_ids()), "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def usage_units(latest: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``layerlab.usage`` unit per actor process from its latest report (GPU seconds: GPUs held x its lifetime so far)."""
    from layerlab.usage import unit

    return [unit("model actor", cpu_seconds=u["cpu_seconds"], wall_seconds=u["wall_seconds"], gpu_seconds=u["wall_seconds"] * u["gpus"],
                 peak_rss_bytes=u["peak_rss_bytes"], node_id=u.get("node_id"), node_ip=u.get("node_ip"), pid=pid)
            for pid, u in sorted(latest.items())]


class ExtractActor:
    """Ray actor body: loads the model once, then extracts shards on request."""

    def __init__(self, model_spec: str, config_json: str, torch_threads: int) -> None:
        import torch

        self._born = (time.process_time(), time.time())  # model loading counts as the actor's work

        from layerlab.extract.config import resolve_mode
        from layerlab.extract.shard_worker import ShardExtractor
        from layerlab.models import load

        torch.set_num_threads(torch_threads)
        config = ExtractConfig.model_validate_json(config_json)
        self.model = load(model_spec, actor_device(config.device), trust_remote_code=config.trust_remote_code)
        self.mode = resolve_mode(config.mode, bool(self.model.padding_invariant))
        self.worker = ShardExtractor(self.model, config, self.mode)
        self.model(torch.zeros(1, self.model.sample_rate), torch.tensor([self.model.sample_rate]))  # warm-up call

    def describe(self) -> dict[str, Any]:
        """Static model facts for the cache metadata, the resolved mode and where this actor runs."""
        from layerlab.extract.shard_worker import describe_model

        return {**describe_model(self.model, self.mode), **placement()}

    def run_shard(self, task: ShardTask, out_url: str, shifts: dict[str, Any]) -> Any:
        """Extract one shard (see ShardExtractor.run); the outcome carries this worker's pid."""
        import resource

        cpu_start = time.process_time()  # this actor process's CPU (all threads): decode, model, encode, publish
        outcome = self.worker.run(task.url, task.name, task.sha256, out_url, shifts)
        outcome.stats.update(pid=float(os.getpid()), cpu_start=cpu_start, cpu_end=time.process_time())
        outcome.stats["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        outcome.usage = actor_usage(self._born)
        return outcome

    def pilot_shifts(self, source_urls: list[str]) -> dict[str, Any]:
        """Shared FeatureCKA shifts computed from pilot utterances drawn across ``source_urls``."""
        return self.worker.pilot_shifts(source_urls)


class JointExtractActor(ExtractActor):
    """Ray actor body for a model group: every model loaded once in one actor (one GPU on a cluster)."""

    def __init__(self, model_specs: Any, config_json: str, torch_threads: int) -> None:  # noqa: D107
        import torch

        self._born = (time.process_time(), time.time())

        from layerlab.extract.config import resolve_mode
        from layerlab.extract.joint_cka import GroupSpec
        from layerlab.extract.joint_worker import JointShardExtractor
        from layerlab.models import load

        group = model_specs if isinstance(model_specs, GroupSpec) else GroupSpec(dict(model_specs))
        torch.set_num_threads(torch_threads)
        config = ExtractConfig.model_validate_json(config_json)
        device = actor_device(config.device)
        self.models = {name: load(spec, device, trust_remote_code=config.trust_remote_code) for name, spec in group.specs.items()}
        self.mode = resolve_mode(config.mode, all(m.padding_invariant for m in self.models.values()))
        configs = {n: ExtractConfig.model_validate_json(c) for n, c in (group.configs or {}).items()}
        self.worker = JointShardExtractor(self.models, config, self.mode, configs, group.all_pairs(), group.layers)
        for m in self.models.values():
            m(torch.zeros(1, m.sample_rate), torch.tensor([m.sample_rate]))  # warm-up call

    def describe(self) -> dict[str, Any]:
        """Per member the static model facts (``members``), the group's batch mode, and where this actor runs."""
        from layerlab.extract.shard_worker import describe_model

        return {"members": {n: describe_model(m, self.mode) for n, m in self.models.items()}, "mode": self.mode, **placement()}


@dataclass
class PlacementLog:
    """Actor events over time (requested, up, released) with node and GPUs, for the log and the summary."""

    t0: float = field(default_factory=time.monotonic)
    events: list[dict[str, Any]] = field(default_factory=list)

    def add(self, event: str, actor: int, **info: Any) -> None:
        """Record and log one event."""
        row = {"t": round(time.monotonic() - self.t0, 3), "event": event, "actor": actor, **info}
        self.events.append(row)
        log.info("extract pool: t=%.1fs actor %d %s %s", row["t"], actor, event,
                 " ".join(f"{k}={v}" for k, v in info.items()))

    def by_node(self) -> dict[str, dict[str, int]]:
        """Actors that came up per node (``IP/node-id prefix``), split by GPU and CPU actors."""
        out: dict[str, Counter] = {}
        for e in self.events:
            if e["event"] == "up":
                out.setdefault(f"{e.get('node_ip')}/{str(e.get('node_id'))[-8:]}", Counter())["gpu" if e.get("gpu_ids") else "cpu"] += 1
        return {k: dict(v) for k, v in out.items()}

    def peak_actors(self) -> int:
        """The most actors up at the same time."""
        live = peak = 0
        for e in self.events:
            live += 1 if e["event"] == "up" else -1 if e["event"] == "released" and e.get("was_up") else 0
            peak = max(peak, live)
        return peak


class ModelActorPool:
    """An autoscaling pool of model actors (min..max) with per-actor Ray resources."""

    def __init__(self, model_spec: Any, config: ExtractConfig, res: ActorResources, env_vars: dict[str, str],
                 actor_body: type = ExtractActor) -> None:
        self.res = res
        options: dict[str, Any] = {
            "num_cpus": res.num_cpus, "num_gpus": res.num_gpus, "max_restarts": -1,
            "max_task_retries": config.task_retries,
            # a second shard task decodes ahead / publishes behind while one holds the model (ShardExtractor.model_lock)
            "max_concurrency": config.tasks_per_actor,
        }
        self.slots = config.tasks_per_actor
        if env_vars:
            options["runtime_env"] = {"env_vars": dict(env_vars)}
        self._cls = ray.remote(actor_body).options(**options)
        self._args = (model_spec, config.model_dump_json(), res.torch_threads)
        self.actors: list[Any] = []
        self.busy: dict[Any, list[ShardTask]] = {}  # actor -> tasks in flight (up to tasks_per_actor)
        self.ready: dict[Any, dict[str, Any]] = {}  # actor -> describe() (placement + model facts)
        self._pending: dict[Any, Any] = {}  # describe ref -> actor not yet up
        self._index: dict[Any, int] = {}
        self._requested_at = time.monotonic()
        self.placements = PlacementLog()
        log.info("extract pool: actors of %s (%s), %d..%d", res.bundle, res.rule, res.min_actors, res.max_actors)
        for _ in range(res.min_actors):
            self._add_actor()

    def _add_actor(self) -> Any:
        actor = self._cls.remote(*self._args)
        self._index[actor] = len(self._index)
        self.actors.append(actor)
        self._pending[actor.describe.remote()] = actor
        self.placements.add("requested", self._index[actor], resources=self.res.bundle)
        return actor

    def busy_actors(self) -> list[Any]:
        """Actors that hold a shard task right now (what a fault test kills)."""
        return list(self.busy)

    def _poll_pending(self, timeout: float = 0.0) -> None:
        """Move actors whose describe() finished into ``ready``; a failed start is raised with its reason."""
        if not self._pending:
            return
        done, _ = ray.wait(list(self._pending), num_returns=len(self._pending), timeout=timeout)
        for ref in done:
            actor = self._pending.pop(ref)
            try:
                desc = ray.get(ref)
            except ray.exceptions.RayError as exc:
                raise PlacementError(f"model actor failed to start: {_root_cause(exc)}") from exc
            self.ready[actor] = desc
            self.placements.add("up", self._index[actor], node_ip=desc.get("node_ip"), node_id=str(desc.get("node_id")),
                                gpu_ids=desc.get("gpu_ids", []))

    def _check_placement(self) -> None:
        """Raise :class:`PlacementError` when no actor is up and none ever can be, or the bounded wait ran out."""
        if self.ready or not self._pending:
            return
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        reason = infeasible_reason(self.res, nodes)
        waited = time.monotonic() - self._requested_at
        if reason is None and waited < self.res.placement_timeout_s:
            return
        why = reason or (f"none of {len(self._pending)} requested actor(s) of {self.res.bundle} was placed within "
                         f"{self.res.placement_timeout_s:g} s (live nodes offer {[dict(n) for n in nodes]})")
        raise PlacementError(f"cannot place model actors ({self.res.rule}): {why}; use --device cpu, fewer GPUs per "
                             "actor, or a cluster whose autoscaler has a node type that fits")

    def first_ready(self, timeout: float | None = None) -> tuple[Any, dict[str, Any]]:
        """Wait (bounded, see ``placement_timeout_s``) for the first actor to come up; (actor, describe())."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.ready:
            self._poll_pending(timeout=1.0)
            self._check_placement()
            if deadline is not None and time.monotonic() > deadline:
                raise PlacementError(f"no model actor came up within {timeout:g} s")
        actor = next(iter(self.ready))
        return actor, self.ready[actor]

    def call_first(self, method: str, *args: Any) -> Any:
        """Run ``method(*args)`` on the first actor that is up and return its result (e.g. the pilot shifts)."""
        actor, _ = self.first_ready()
        return ray.get(getattr(actor, method).remote(*args))

    def request(self, wanted: int) -> None:
        """Request actors up to ``wanted`` (capped at max) now, e.g. one per queued shard before the first is up."""
        self._grow(wanted)

    def _grow(self, wanted: int) -> None:
        """Request actors up to ``wanted`` (capped at max); they need not fit now."""
        target = min(self.res.max_actors, max(self.res.min_actors, wanted))
        while len(self.actors) < target:
            self._add_actor()

    def _release(self, actor: Any, idle: list[Any]) -> None:
        was_up = actor in self.ready
        self.ready.pop(actor, None)
        for ref, a in list(self._pending.items()):
            if a is actor:
                del self._pending[ref]
        if actor in idle:
            idle.remove(actor)
        self.actors.remove(actor)
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.placements.add("released", self._index[actor], was_up=was_up)

    def _shrink(self, idle: list[Any]) -> None:
        """Queue drained: release still-pending actors and idle ones above MIN."""
        for actor in [a for a in self.actors if a not in self.ready and a not in self.busy]:
            if len(self.actors) > self.res.min_actors or not self.ready:
                self._release(actor, idle)
        for actor in list(idle):
            if len(self.actors) > self.res.min_actors:
                self._release(actor, idle)

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
        idle: list[Any] = []
        in_flight: dict[Any, tuple[Any, ShardTask]] = {}

        def dispatch() -> None:
            # every actor up gets a first shard before any gets a second (the second decodes ahead on a busy actor)
            for depth in range(self.slots):
                for actor in list(self.ready):
                    if not queue:
                        return
                    if len(self.busy.get(actor, [])) == depth:
                        task = queue.popleft()
                        in_flight[actor.run_shard.remote(task, out_url, shifts)] = (actor, task)
                        self.busy.setdefault(actor, []).append(task)
                        if actor in idle:
                            idle.remove(actor)

        while queue or in_flight:
            if queue:
                self._grow(len(in_flight) + len(queue))
            self._poll_pending()
            if not in_flight:
                self._check_placement()
            idle.extend(a for a in self.ready if a not in idle and a not in self.busy)
            dispatch()
            if not queue:
                self._shrink(idle)
            wait_on = list(in_flight) + (list(self._pending) if queue else [])
            if not wait_on:
                continue
            ready, _ = ray.wait(wait_on, num_returns=1, timeout=1.0)
            finished: list[ShardTask] = []
            for ref in ready:
                if ref not in in_flight:
                    continue  # an actor came up: picked up by _poll_pending next round
                actor, task = in_flight.pop(ref)
                self.busy[actor].remove(task)
                if not self.busy[actor]:
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
        self._shrink(idle)

    def shutdown(self) -> None:
        """Kill every actor (no restart)."""
        for actor in list(self.actors):
            self._release(actor, [])
        self.actors.clear()

    def summary(self) -> dict[str, Any]:
        """Actors per node (GPU/CPU), the most up at once, and the event timeline."""
        return {"rule": self.res.rule, "resources": self.res.bundle, "by_node": self.placements.by_node(),
                "peak_actors": self.placements.peak_actors(), "events": list(self.placements.events)}


def _root_cause(exc: BaseException) -> str:
    """The original error line inside a Ray actor-creation failure (e.g. the model's CheckpointError), not Ray's wrapper."""
    import re

    cause = getattr(exc, "cause", None)
    while getattr(cause, "cause", None) is not None and cause is not cause.cause:
        cause = cause.cause
    if isinstance(cause, BaseException) and not isinstance(cause, ray.exceptions.RayError) and str(cause):
        return f"{type(cause).__name__}: {str(cause).splitlines()[0]}"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception): ", ln)]
    return errors[-1] if errors else (lines[0] if lines else type(exc).__name__)

"""The CKA reducer as a Ray actor (the only CKA module that imports Ray), plus a resend-until-committed sender.

The actor restarts automatically (``max_restarts=-1``) and resumes from its checkpoint; calls in
flight are retried (``max_task_retries=-1``). Because ``add`` is idempotent per shard id, a
sender that keeps its shard states until they are committed can always re-send safely.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import ray

from layerlab.cka.reduction import CKAReduction


class _ReducerActor:
    """Ray actor body: a :class:`CKAReduction` that rebuilds itself from the checkpoint on (re)start."""

    def __init__(self, checkpoint_url: str | None, checkpoint_every: int, fanout: int) -> None:
        self.core = CKAReduction(checkpoint_url, checkpoint_every, fanout)

    def add(self, shard_id: str, state: dict[str, Any], ids: list[str] | None = None) -> bool:
        return self.core.add(shard_id, state, ids)

    def checkpoint(self) -> list[str]:
        return self.core.checkpoint()

    def committed_shards(self) -> list[str]:
        return self.core.committed_shards()

    def result(self, estimator: str = "biased") -> Any:
        return self.core.result(estimator)

    def state_dict(self) -> dict[str, Any] | None:
        return self.core.state_dict()

    def info(self) -> dict[str, Any]:
        import os

        return {"pid": os.getpid(), "resumed": self.core.resumed, "shards": len(self.core.seen)}


def start_reducer(
    checkpoint_url: str | None,
    checkpoint_every: int = 8,
    fanout: int = 16,
    name: str | None = None,
    detached: bool = False,
    env_vars: Mapping[str, str] | None = None,
) -> Any:
    """Start (or get, by ``name``) the reducer actor; ``detached`` keeps it alive beyond the driver.

    The actor gets the driver's worker environment (object-store endpoint and credentials of the
    checkpoint store, see :func:`layerlab.runtime.worker_env`) plus ``env_vars``.
    """
    from layerlab.runtime import runtime_env

    options: dict[str, Any] = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": -1}
    env = runtime_env(env_vars)
    if env["env_vars"]:
        options["runtime_env"] = env
    if name:
        options.update(name=name, get_if_exists=True)
    if detached:
        options["lifetime"] = "detached"
    actor_cls = ray.remote(_ReducerActor)
    return actor_cls.options(**options).remote(checkpoint_url, checkpoint_every, fanout)


def send_until_committed(reducer: Any, states: Mapping[str, dict[str, Any]], max_rounds: int = 10, pause_s: float = 0.5,
                         ids: Mapping[str, list[str]] | None = None) -> list[str]:
    """Send every shard state (with its utterance ids, when given), then re-send those a restart lost until all are in a checkpoint."""
    missing = sorted(states)
    ids = ids or {}
    for _ in range(max_rounds):
        ray.get([reducer.add.remote(sid, states[sid], ids.get(sid)) for sid in missing])
        committed = set(ray.get(reducer.checkpoint.remote()))
        missing = sorted(set(states) - committed)
        if not missing:
            return sorted(committed)
        time.sleep(pause_s)
    raise RuntimeError(f"reducer: shards {missing[:5]}... still not committed after {max_rounds} rounds")


def run_cka_on_ray(job: Any, out_url: str, checkpoint_url: str | None = None, bootstrap: int = 0, env_vars: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Distributed CKA of a :class:`~layerlab.cka.pipeline.CKAJob`: one Ray task per shard, one reducer actor."""
    from layerlab.accumulator import merge_all
    from layerlab.cache.reader import IdLedger
    from layerlab.cka.pipeline import finish, merge_groups, pilot_shift_for, plan_sample, shard_group_states
    from layerlab.cka.state_io import accumulator_from_state

    from layerlab.runtime import runtime_env

    @ray.remote(num_cpus=1, runtime_env=runtime_env(env_vars))
    def shard_task(urls: list[str], shift: Any, keep_groups: bool) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]], list[str], dict[str, Any]]:
        ids: list[str] = []
        groups = shard_group_states(job, urls, shift, ids)
        counts = job.counts[urls[0]]
        counts["sample_parts"] = job.collector.parts if job.collector is not None else []  # this shard's sampled items
        if not groups:  # every utterance of the shard was quarantined
            return None, {}, ids, counts
        merged = merge_all([accumulator_from_state(g.state_dict()) for g in groups.values()])
        return merged.state_dict(), {k: g.state_dict() for k, g in groups.items()} if keep_groups else {}, ids, counts

    shift = pilot_shift_for(job)
    plan_sample(job)
    keep = bootstrap > 0 or "ridge_r2" in job.measures  # ridge_r2 cross-validates over the groups
    refs = {name: shard_task.options(num_returns=1).remote(urls, shift, keep) for name, urls in job.shard_pairs()}
    results = dict(zip(refs, ray.get(list(refs.values()))))
    ledger = IdLedger(job.a_url)  # the tasks read one shard each: utterances in two shards are caught here, checksums or not
    for name in sorted(results):
        ledger.add(results[name][2], name)
    reducer = start_reducer(checkpoint_url, env_vars=env_vars)
    send_until_committed(reducer, {name: res[0] for name, res in results.items() if res[0] is not None},
                         ids={name: res[2] for name, res in results.items()})
    merged = accumulator_from_state(ray.get(reducer.state_dict.remote()), estimator=job.estimator)
    groups = merge_groups((k, accumulator_from_state(g)) for res in results.values() for k, g in res[1].items())
    job.counts.update({name: res[3] for name, res in results.items()})  # the tasks counted on their copies of the job
    if job.collector is not None:
        for name in sorted(results):
            job.collector.extend(job.counts[name].pop("sample_parts", []))
        job.sample = job.collector.sample()
    return finish(job, merged, out_url, groups, bootstrap)

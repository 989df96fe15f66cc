"""The profile passes on Ray: one task per shard and pass, states merged on the driver (the only profile module that imports Ray)."""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import ray


def run_profile_on_ray(job: Any, out_url: str, env_vars: Mapping[str, str] | None = None, progress: Callable[[str], None] | None = None,
                       model: str | None = None) -> dict[str, Any]:
    """:func:`layerlab.profile.pipeline.run_profile` with both passes spread over the cluster (the pilot and the fits on the driver)."""
    from layerlab.cache.reader import IdLedger
    from layerlab.profile.passes import shard_moments, shard_scores
    from layerlab.profile.pipeline import make_pilot, merge_parts, merge_scores, prepare
    from layerlab.profile.results import finish, fit_classifiers
    from layerlab.runtime import runtime_env

    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    prep = prepare(job)
    pilot = make_pilot(prep)
    timing = {"pilot_s": time.perf_counter() - t0}
    remote_moments = ray.remote(num_cpus=1, runtime_env=runtime_env(env_vars))(shard_moments)
    remote_scores = ray.remote(num_cpus=1, runtime_env=runtime_env(env_vars))(shard_scores)
    shards = prep.shards()
    prep_ref, pilot_ref = ray.put(prep), ray.put(pilot)
    say(f"pass 1: {len(shards)} shard tasks")
    results = dict(zip(shards, ray.get([remote_moments.remote(prep_ref, pilot_ref, s) for s in shards])))
    ledger = IdLedger(prep.info.url)  # one task per shard: an utterance in two shards is caught here
    for shard in sorted(results):
        ledger.add(results[shard][1], shard)
    timing["pass1_s"] = time.perf_counter() - t0 - timing["pilot_s"]
    groups = merge_parts(res[0] for res in results.values())
    classifiers, fit_notes = fit_classifiers(prep, groups)
    t1 = time.perf_counter()
    scores: dict[str, Any] = {}
    if classifiers:
        say(f"pass 2: {len(shards)} shard tasks")
        clf_ref = ray.put(classifiers)
        scores = merge_scores(ray.get([remote_scores.remote(prep_ref, clf_ref, s) for s in shards]))
    timing["pass2_s"] = time.perf_counter() - t1
    counts = {shard: res[2] for shard, res in results.items()}
    return finish(prep, pilot, groups, classifiers, scores, out_url, counts, fit_notes, timing, model=model, progress=say)

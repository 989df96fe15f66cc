"""``extract_joint()``: several models in one actor over the same audio -> one cache per model + joint CKA states.

Layout under ``out_url``: ``<member>/`` is an ordinary activation cache per model (resumable,
verifiable, read by every command). For each pair (A, B) in group order, A's cache holds the
side-output ``joint-<B>``: per shard one FeatureCKA state in joint layout over A's then B's
frame-level layers, so ``layerlab cka --a OUT/A --b OUT/B --from-side-output joint`` gives the
A x A, B x B and A x B maps without a frames tier. A shard counts as done only when every member
has it; the per-shard time and memory are in the summary.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from layerlab import storage
from layerlab.accumulator import state_from_bytes, state_to_bytes
from layerlab.cache import format as cf
from layerlab.cache.reader import read_cache_manifest
from layerlab.data.manifest import read_manifest
from layerlab.extract.config import ExtractConfig
from layerlab.extract.joint_cka import GroupSpec, joint_name, member_names, member_spec
from layerlab.extract.pipeline import (
    _finalise,
    _metadata,
    _prepare_output,
    finished_shards,
    pilot_urls,
    record_placements,
    record_shard,
    selection_json,
    start_pool,
)
from layerlab.extract.pool import JointExtractActor, ModelActorPool, ShardTask, usage_units
from layerlab.extract.summary import ExtractSummary, JointSummary, ShardCost, busy_seconds
from layerlab.progress import AudioProgress
from layerlab.runtime import init_ray

log = logging.getLogger(__name__)


def joint_side_outputs(names: list[str], desc: dict[str, Any], pairs: list[tuple[str, str]] | None = None,
                       layers: dict[str, list[str]] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Per member, the ``metadata.json`` records of its joint side-outputs (one per later member it is paired with)."""
    frame_layers = {n: [ln for ln, r in zip(d["layer_names"], d["frame_rates_hz"]) if r is not None] for n, d in desc.items()}
    frame_layers.update({n: list(v) for n, v in (layers or {}).items() if n in frame_layers})
    pairs = pairs if pairs is not None else [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for a, b in pairs:
        out[a].append({"name": joint_name(b), "estimator": "feature", "joint_with": b, "layers": frame_layers[a], "layers_b": frame_layers[b]})
    return out


def _joint_shifts(urls: dict[str, str], sides: dict[str, list[str]], pool: ModelActorPool, pilot: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Shared shifts of every member's feature states: loaded from the caches, or computed once by an actor and saved."""
    files = {(n, s): storage.join(urls[n], f"cka/{s}/shift.npz") for n, names in sides.items() for s in names}
    if not files:
        return {}
    if all(storage.exists(u) for u in files.values()):
        shifts: dict[str, dict[str, np.ndarray]] = {n: {} for n in urls}
        for (n, s), u in files.items():
            shifts[n][s] = state_from_bytes(storage.read_bytes(u))["shift"]
        return shifts
    shifts = pool.call_first("pilot_shifts", pilot)
    for (n, s), u in files.items():
        storage.atomic_write_bytes(u, state_to_bytes({"shift": np.asarray(shifts[n][s])}))
    return shifts


def extract_joint(model_specs: list[str], data_url: str, out_url: str, config: ExtractConfig | None = None, *,
                  member_urls: dict[str, str] | None = None, member_configs: dict[str, ExtractConfig] | None = None,
                  pairs: list[tuple[str, str]] | None = None, layers: dict[str, list[str]] | None = None) -> JointSummary:
    """Extract every model of ``model_specs`` (``[NAME=]SPEC``) in one actor per group into ``out_url/<name>/`` caches plus joint CKA states.

    The study passes ``member_urls`` (each member's cache URL), ``member_configs`` (each member's tier and own
    side-outputs; batching must agree), ``pairs`` (the pairs that get a joint state; default all) and ``layers``
    (each member's joint CKA layers; default its frame-level ones).
    """
    config = config or ExtractConfig()
    t0 = time.perf_counter()
    if len(model_specs) < 2:
        raise ValueError(f"--model: a joint extraction needs at least 2 models, got {len(model_specs)}")
    names = member_names(model_specs)
    specs = {n: member_spec(s) for n, s in zip(names, model_specs)}
    configs = {n: (member_configs or {}).get(n, config) for n in names}
    group = GroupSpec(specs, {n: c.model_dump_json() for n, c in configs.items()}, [tuple(p) for p in pairs] if pairs is not None else None,  # type: ignore[misc]
                      dict(layers) if layers else None)
    data_url, out_url = storage.canonical_url(data_url), storage.canonical_url(out_url)
    source = read_manifest(data_url)
    urls = {n: storage.canonical_url((member_urls or {})[n]) if member_urls else storage.join_inside(out_url, n) for n in names}  # names are checked; join_inside keeps every cache inside --out
    for url in set(urls.values()) if member_urls else {out_url}:
        storage.check_output_dir(url)
    init_ray()
    pool = start_pool(group, config, actor_body=JointExtractActor)
    pool.request(len(source.shards))
    summary = JointSummary(out_url=out_url, members={})
    manifests: dict[str, cf.CacheManifest] = {}
    joint_sides: dict[str, list[dict[str, Any]]] = {}
    try:
        _, desc = pool.first_ready()
        joint_sides = joint_side_outputs(names, desc["members"], group.all_pairs(), layers)
        for n in names:
            meta = _metadata(specs[n], data_url, configs[n], desc["members"][n], source)
            meta.source.relative = cf.relative_location(data_url, urls[n])
            meta.cka = meta.cka + joint_sides[n]
            _prepare_output(urls[n], meta, configs[n].overwrite, selection_json(configs[n]))
        by_name = {s.name: s for s in source.shards}
        done = None
        for n in names:
            manifests[n] = read_cache_manifest(urls[n])
            kept = finished_shards(urls[n], manifests[n], by_name, config.verify)
            done = set(kept) if done is None else done & set(kept)
            manifests[n].shards = kept
        for n in names:  # a shard missing in one member is extracted again for all (the joint state needs every model)
            manifests[n].shards = {k: v for k, v in manifests[n].shards.items() if k in (done or set())}
        todo = [ShardTask(storage.join(data_url, s.name), s.name, s.sha256) for s in source.shards if s.name not in (done or set())]
        skipped = len(source.shards) - len(todo)
        if config.max_shards is not None:
            todo = todo[: config.max_shards]
        sides = {n: [c.name for c in configs[n].cka if c.estimator == "feature"] + [j["name"] for j in joint_sides[n]] for n in names}
        shifts = _joint_shifts(urls, sides, pool, pilot_urls(data_url, source, config)) if source.shards else {}
        for n in names:
            summary.members[n] = ExtractSummary(out_url=urls[n], model_spec=specs[n], mode=desc["mode"], tiers=configs[n].tiers,
                                                shards_total=len(source.shards), shards_written=0, shards_skipped=skipped, complete=False)
        progress = AudioProgress(sum(by_name[t.name].rows for t in todo), sum(by_name[t.name].audio_seconds for t in todo), config.progress)

        intervals: list[tuple[float, float, float]] = []
        actors: dict[int, dict[str, Any]] = {}

        def on_result(task: ShardTask, outcome: Any) -> None:
            if outcome.usage:
                actors[int(outcome.usage["pid"])] = outcome.usage
                summary.actor_usage = usage_units(actors)
            intervals.append((outcome.stats.get("pid", 0.0), outcome.stats.get("t_start", 0.0), outcome.stats.get("t_end", outcome.wall_seconds)))
            for n, o in outcome.members.items():
                s = summary.members[n]
                record_shard(urls[n], manifests[n], s, task.name, o)
                s.shard_seconds = round(busy_seconds(intervals), 3)
                s.actor_peak_rss_mb = max(s.actor_peak_rss_mb, outcome.stats.get("peak_rss_mb", 0.0))
            summary.shards.append(ShardCost(
                shard=task.name, wall_seconds=outcome.wall_seconds, joint_seconds=round(outcome.joint_seconds, 3),
                model_seconds={n: round(o.model_seconds, 3) for n, o in outcome.members.items()},
                joint_state_mb=round(outcome.joint_state_bytes / 2**20, 3), actor_peak_rss_mb=round(outcome.stats.get("peak_rss_mb", 0.0), 1)))
            first = next(iter(outcome.members.values()))
            progress.update(first.utterances + len(first.record.quarantined), first.audio_seconds)

        def on_error(task: ShardTask, exc: BaseException) -> None:
            log.error("shard %s failed: %s", task.name, exc)
            for s in summary.members.values():
                s.shards_failed[task.name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"

        try:
            pool.run(todo, urls, shifts, on_result, on_error)
        finally:
            progress.close()
    finally:
        pool.shutdown()
        for s in summary.members.values():
            record_placements(s, pool)
    for n in names:
        manifest = manifests[n]
        if len(manifest.shards) == len(source.shards):
            sides_n = [c.name for c in configs[n].cka] + [j["name"] for j in joint_sides[n]]
            summary.members[n].cka_results = _finalise(urls[n], data_url, source, manifest, sides_n)
        manifest.recount()
        storage.write_json(storage.join(urls[n], cf.MANIFEST_NAME), manifest.model_dump(mode="json"))
        s = summary.members[n]
        s.complete, s.cache_utterances = manifest.complete, manifest.kept
        s.quarantined_source = manifest.quarantined_source if manifest.complete else source.quarantined
        s.quarantined_model = manifest.quarantined_model
        s.tier_bytes = {t: manifest.tier_bytes(t) for t in configs[n].tiers}
        s.wall_seconds = round(time.perf_counter() - t0, 3)
    summary.joint = [f"{urls[n]}/cka/{j['name']}" for n in names for j in joint_sides[n]]
    summary.wall_seconds = round(time.perf_counter() - t0, 3)
    return summary

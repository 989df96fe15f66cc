"""``extract()``: audio shards -> activation cache on Ray, resumable per shard.

The driver reads the audio manifest, starts the model-actor pool, writes ``metadata.json``,
dispatches every shard not yet in the cache manifest, records each completed shard in
``manifest.json`` as it arrives, and, once every shard is done, writes the quarantine table and
the merged CKA states and marks the cache complete.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import numpy as np
import ray

from layerlab import artifacts, storage
from layerlab.accumulator import state_from_bytes, state_to_bytes
from layerlab.cache import format as cf
from layerlab.cache.reader import read_cache_manifest
from layerlab.data.manifest import read_manifest
from layerlab.data.shards import read_quarantine as read_source_quarantine
from layerlab.extract.config import ExtractConfig
from layerlab.extract.pool import ModelActorPool, ShardTask, usage_units
from layerlab.extract.resources import autoscaler_node_types, plan_resources
from layerlab.extract.summary import ExtractSummary, busy_seconds, cpu_seconds
from layerlab.progress import AudioProgress
from layerlab.runtime import init_ray, worker_env
from layerlab.settings import SettingsMismatch, describe_keys, diff_keys

log = logging.getLogger(__name__)

AfterShard = Callable[[ShardTask, ModelActorPool], None]


class CacheMismatch(SettingsMismatch):
    """The output URL holds a cache made with a different model, data or settings (``keys``: the differing ones)."""


def _metadata(model_spec: str, data_url: str, config: ExtractConfig, desc: dict[str, Any], source: Any) -> cf.CacheMetadata:
    from layerlab import __version__

    return cf.CacheMetadata(
        model_spec=model_spec, layer_names=desc["layer_names"], dims=desc["dims"], frame_rates_hz=desc["frame_rates_hz"],
        sample_rate=desc["sample_rate"], num_parameters=desc["num_parameters"], padding_invariant=desc["padding_invariant"],
        mode=desc["mode"], tiers=config.tiers,
        batch={"batch_seconds": config.batch_seconds, "max_batch_size": config.max_batch_size,
               "bucket_window_seconds": config.bucket_window_seconds},
        source=cf.SourceInfo(url=data_url, dataset=source.dataset, manifest_checksum=source.checksum(), shards=len(source.shards),
                             utterances=source.kept, audio_seconds=source.audio_seconds),
        cka=[c.model_dump() for c in config.cka], layerlab_version=__version__,
        layers=[cf.LayerRecord(**g) for g in desc.get("layers", [])], tasks=dict(source.tasks),
        frames_selection=_selection_record(config),
    )


def _selection_record(config: ExtractConfig) -> dict[str, Any] | None:
    """The metadata record of a partial frames tier (its digest is part of the cache identity)."""
    if config.frames_select is None or "frames" not in config.tiers:
        return None
    from layerlab.data.selection import FramesSelection

    sel = FramesSelection(dict(config.frames_select))
    return {"sha256": sel.digest(), "utterances": len(sel.ids), "cropped": sel.cropped}


def selection_json(config: ExtractConfig) -> dict[str, Any] | None:
    """The frames selection as written to ``frames_selection.json`` (None: every utterance)."""
    if config.frames_select is None:
        return None
    from layerlab.data.selection import FramesSelection

    return FramesSelection(dict(config.frames_select)).to_json()


def _prepare_output(out_url: str, meta: cf.CacheMetadata, overwrite: bool, selection_doc: dict[str, Any] | None = None) -> None:
    """Write ``metadata.json`` (and the frames selection), or check that an existing cache was made the same way."""
    selection_doc = selection_doc or {}
    meta_url = storage.join(out_url, cf.METADATA_NAME)
    if storage.exists(meta_url):
        if overwrite:
            from layerlab.lease import KEEP

            storage.remove(out_url, recursive=True, within=out_url, keep=KEEP)  # the output's lease stays with its holder
        else:
            old = cf.CacheMetadata.model_validate(storage.read_json(meta_url))
            diff = diff_keys(old.identity(), meta.identity())
            if diff:
                raise CacheMismatch(f"{out_url}: an existing cache differs in {describe_keys(diff)}; use another --out or --overwrite", diff)
            return
    if meta.frames_selection is not None:  # before metadata.json, which marks the cache as started
        storage.write_json(storage.join(out_url, cf.FRAMES_SELECTION_NAME), {"sha256": meta.frames_selection["sha256"], **selection_doc})
    storage.write_json(meta_url, meta.model_dump(mode="json"))


def pilot_urls(data_url: str, source: Any, config: ExtractConfig) -> list[str]:
    """A seeded sample of ``config.pilot_shards`` source shards (in dataset order) the pilot utterances come from."""
    names = [s.name for s in source.shards]
    k = min(len(names), config.pilot_shards)
    seed = config.cka[0].seed if config.cka else 0
    picked = sorted(np.random.default_rng(seed).choice(len(names), size=k, replace=False)) if k else []
    return [storage.join(data_url, names[i]) for i in picked]


def _shifts(out_url: str, config: ExtractConfig, pool: ModelActorPool, pilot: list[str]) -> dict[str, np.ndarray]:
    """Shared FeatureCKA shifts: loaded from the cache, or computed once by an actor (pilot across shards) and saved."""
    feature_sides = [c.name for c in config.cka if c.estimator == "feature"]
    if not feature_sides:
        return {}
    urls = {n: storage.join(out_url, f"cka/{n}/shift.npz") for n in feature_sides}
    if all(storage.exists(u) for u in urls.values()):
        return {n: state_from_bytes(storage.read_bytes(u))["shift"] for n, u in urls.items()}
    shifts = pool.call_first("pilot_shifts", pilot)
    for n, u in urls.items():
        storage.atomic_write_bytes(u, state_to_bytes({"shift": np.asarray(shifts[n])}))
    return shifts


def _finalise(out_url: str, data_url: str, source: Any, manifest: cf.CacheManifest, sides: list[str]) -> dict[str, list[list[float]]]:
    """Quarantine table (source + model), merged CKA states, ``complete`` flag."""
    from layerlab.cache.reader import CacheReader
    from layerlab.cka.reduction import CKAReduction

    rows: list[dict[str, str]] = []
    if source.quarantine is not None:
        src = read_source_quarantine(data_url)
        rows += [{k: str(r.get(k) or "") for k in ("id", "source", "reason", "stage")} for r in src.to_pylist()]
    manifest.quarantined_source = len(rows)
    for name in sorted(manifest.shards):
        rows += [q.model_dump() for q in manifest.shards[name].quarantined]
    manifest.quarantine = artifacts.publish_table(out_url, cf.QUARANTINE_NAME, artifacts.quarantine_table(rows), compression="snappy")
    results: dict[str, list[list[float]]] = {}
    reader = CacheReader(out_url, cf.CacheMetadata.model_validate(storage.read_json(storage.join(out_url, cf.METADATA_NAME))), manifest, allow_partial=True)
    for side in sides:
        reduction = CKAReduction(device="cpu")
        for shard, state in reader.cka_states(side).items():
            reduction.add(shard, state)
        state = reduction.state_dict()
        if state is None:
            continue
        manifest.cka_merged[side] = artifacts.publish_bytes(out_url, f"cka/{side}/merged.npz", state_to_bytes(state))
        try:
            results[side] = np.asarray(reduction.result("biased")).tolist()
        except ValueError as exc:  # e.g. too few frames for a minibatch
            log.warning("cka %s: no result (%s)", side, exc)
    manifest.complete = True
    return results


def start_pool(model_spec: Any, config: ExtractConfig, actor_body: type | None = None) -> ModelActorPool:
    """Size actors from the request and the autoscaler's node types (logging the rule) and start the pool."""
    node_types, source = autoscaler_node_types(ray.get_runtime_context().gcs_address)
    res = plan_resources(ray.cluster_resources(), config, node_types)
    log.info("extract: actors of %s because %s (autoscaler node types from %s)", res.bundle, res.rule, source)
    kwargs = {"actor_body": actor_body} if actor_body is not None else {}
    return ModelActorPool(model_spec, config, res, worker_env(config.env_vars), **kwargs)


def record_placements(summary: ExtractSummary, pool: ModelActorPool) -> None:
    """Copy the pool's placement record (rule, actors per node and GPU/CPU, timeline) into the summary."""
    info = pool.summary()
    summary.actors_started = sum(1 for e in info["events"] if e["event"] == "up")
    summary.actor_rule = info["rule"]
    summary.actor_resources = info["resources"]
    summary.actors_by_node = info["by_node"]
    summary.actor_events = info["events"]


def record_shard(out_url: str, manifest: cf.CacheManifest, summary: ExtractSummary, shard: str, outcome: Any) -> None:
    """A finished shard enters the cache manifest (written at once, so a crash resumes after it) and the run's counts."""
    manifest.shards[shard] = outcome.record
    manifest.recount()
    storage.write_json(storage.join(out_url, cf.MANIFEST_NAME), manifest.model_dump(mode="json"))
    summary.shards_written += 1
    summary.written_shards.append(shard)
    summary.utterances += outcome.utterances
    summary.audio_seconds += outcome.audio_seconds
    summary.model_seconds += outcome.model_seconds
    summary.retried_alone += outcome.retried_alone


def add_step_seconds(total: dict[str, float], stats: dict[str, float]) -> None:
    """Add one shard task's per-step timers (``*_seconds`` stats) into the run's totals."""
    for key, value in stats.items():
        if key.endswith("_seconds"):
            total[key.removesuffix("_seconds")] = round(total.get(key.removesuffix("_seconds"), 0.0) + float(value), 4)


def finished_shards(out_url: str, manifest: cf.CacheManifest, source_by_name: dict[str, Any], verify: bool = True) -> dict[str, cf.ShardRecord]:
    """Shard records a rerun may skip: same source shard checksum and (with ``verify``) every file intact.

    A truncated, corrupted or replaced cache file makes its shard be extracted again.
    """
    keep = {}
    for name, rec in manifest.shards.items():
        if name not in source_by_name or rec.source_sha256 != source_by_name[name].sha256:
            continue
        problems = artifacts.verify_entries(out_url, list(rec.files.values()) + list(rec.cka.values())) if verify else []
        if problems:
            log.warning("shard %s will be extracted again: %s", name, problems[0])
            continue
        keep[name] = rec
    return keep


def extract(
    model_spec: str,
    data_url: str,
    out_url: str,
    config: ExtractConfig | None = None,
    *,
    after_shard: AfterShard | None = None,
    actor_body: type | None = None,
) -> ExtractSummary:
    """Extract every layer of ``model_spec`` over the audio shards at ``data_url`` into a cache at ``out_url``.

    Resumable: shards already in the cache manifest are skipped. ``after_shard(task, pool)`` is
    called after each completed shard once new work was handed out (fault-injection hook).
    ``actor_body`` replaces the model actor class (a subclass of :class:`ExtractActor`, e.g. the
    benchmark's, which also times a bare model loop in the same process).
    """
    config = config or ExtractConfig()
    t0 = time.perf_counter()
    data_url, out_url = storage.canonical_url(data_url), storage.canonical_url(out_url)
    source = read_manifest(data_url)
    storage.check_output_dir(out_url)
    init_ray()  # respects RAY_ADDRESS; starts an embedded Ray otherwise
    pool = start_pool(model_spec, config, actor_body)
    pool.request(len(source.shards))  # all the demand at once: the autoscaler launches nodes in parallel
    summary: ExtractSummary | None = None
    try:
        _, desc = pool.first_ready()
        meta = _metadata(model_spec, data_url, config, desc, source)
        meta.source.relative = cf.relative_location(data_url, out_url)
        _prepare_output(out_url, meta, config.overwrite, selection_json(config))
        manifest = read_cache_manifest(out_url)
        by_name = {s.name: s for s in source.shards}
        manifest.shards = finished_shards(out_url, manifest, by_name, config.verify)
        todo = [ShardTask(storage.join(data_url, s.name), s.name, s.sha256) for s in source.shards if s.name not in manifest.shards]
        skipped = len(source.shards) - len(todo)
        if config.max_shards is not None:
            todo = todo[: config.max_shards]
        shifts = _shifts(out_url, config, pool, pilot_urls(data_url, source, config)) if source.shards else {}
        summary = ExtractSummary(out_url=out_url, model_spec=model_spec, mode=desc["mode"], tiers=config.tiers,
                                 shards_total=len(source.shards), shards_written=0, shards_skipped=skipped, complete=False)
        progress = AudioProgress(sum(by_name[t.name].rows for t in todo), sum(by_name[t.name].audio_seconds for t in todo), config.progress)
        intervals: list[tuple[float, float, float]] = []
        cpu_spans: list[tuple[float, float, float]] = []
        actors: dict[int, dict[str, Any]] = {}

        def on_result(task: ShardTask, outcome: Any) -> None:
            record_shard(out_url, manifest, summary, task.name, outcome)
            if outcome.usage:
                actors[int(outcome.usage["pid"])] = outcome.usage
                summary.actor_usage = usage_units(actors)
            intervals.append((outcome.stats.get("pid", 0.0), outcome.stats.get("t_start", 0.0), outcome.stats.get("t_end", outcome.record.wall_seconds)))
            summary.shard_seconds = round(busy_seconds(intervals), 3)
            cpu_spans.append((outcome.stats.get("pid", 0.0), outcome.stats.get("cpu_start", 0.0), outcome.stats.get("cpu_end", 0.0)))
            summary.actor_cpu_seconds = round(cpu_seconds(cpu_spans), 3)
            summary.actor_peak_rss_mb = max(summary.actor_peak_rss_mb, outcome.stats.get("peak_rss_mb", 0.0))
            add_step_seconds(summary.step_seconds, outcome.stats)
            progress.update(outcome.utterances + len(outcome.record.quarantined), outcome.audio_seconds)

        def on_error(task: ShardTask, exc: BaseException) -> None:
            log.error("shard %s failed: %s", task.name, exc)
            summary.shards_failed[task.name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"

        try:
            pool.run(todo, out_url, shifts, on_result, on_error, after_shard)
        finally:
            progress.close()
    finally:
        pool.shutdown()
        if summary is not None:
            record_placements(summary, pool)
    if len(manifest.shards) == len(source.shards):
        summary.cka_results = _finalise(out_url, data_url, source, manifest, [c.name for c in config.cka])
    manifest.recount()
    storage.write_json(storage.join(out_url, cf.MANIFEST_NAME), manifest.model_dump(mode="json"))
    summary.complete = manifest.complete
    summary.cache_utterances = manifest.kept
    summary.quarantined_source = manifest.quarantined_source if manifest.complete else source.quarantined
    summary.quarantined_model = manifest.quarantined_model
    summary.tier_bytes = {t: manifest.tier_bytes(t) for t in config.tiers}
    summary.wall_seconds = round(time.perf_counter() - t0, 3)
    return summary


#: the library entry point under the name the study calls
run_extract = extract

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
from layerlab.extract.pool import ModelActorPool, ShardTask
from layerlab.extract.resources import plan_resources
from layerlab.extract.summary import ExtractSummary
from layerlab.progress import AudioProgress
from layerlab.runtime import init_ray, worker_env

log = logging.getLogger(__name__)

AfterShard = Callable[[ShardTask, ModelActorPool], None]


class CacheMismatch(ValueError):
    """The output URL holds a cache made with a different model, data or settings."""


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
    )


def _prepare_output(out_url: str, meta: cf.CacheMetadata, overwrite: bool) -> None:
    """Write ``metadata.json``, or check that an existing cache was made the same way."""
    meta_url = storage.join(out_url, cf.METADATA_NAME)
    if storage.exists(meta_url):
        if overwrite:
            storage.remove(out_url, recursive=True)
        else:
            old = cf.CacheMetadata.model_validate(storage.read_json(meta_url))
            mine, theirs = meta.identity(), old.identity()
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            if diff:
                raise CacheMismatch(
                    f"{out_url}: an existing cache differs in {', '.join(diff)}; use another --out or --overwrite"
                )
            return
    storage.write_json(meta_url, meta.model_dump(mode="json"))


def _shifts(out_url: str, config: ExtractConfig, pool: ModelActorPool, first_shard: str) -> dict[str, np.ndarray]:
    """Shared FeatureCKA shifts: loaded from the cache, or computed once by an actor and saved."""
    feature_sides = [c.name for c in config.cka if c.estimator == "feature"]
    if not feature_sides:
        return {}
    urls = {n: storage.join(out_url, f"cka/{n}/shift.npz") for n in feature_sides}
    if all(storage.exists(u) for u in urls.values()):
        return {n: state_from_bytes(storage.read_bytes(u))["shift"] for n, u in urls.items()}
    shifts = ray.get(pool.actors[0].pilot_shifts.remote(first_shard))
    for n, u in urls.items():
        storage.atomic_write_bytes(u, state_to_bytes({"shift": np.asarray(shifts[n])}))
    return shifts


def _finalise(out_url: str, data_url: str, source: Any, manifest: cf.CacheManifest, config: ExtractConfig) -> dict[str, list[list[float]]]:
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
    for side in config.cka:
        reduction = CKAReduction(device="cpu")
        for shard, state in reader.cka_states(side.name).items():
            reduction.add(shard, state)
        state = reduction.state_dict()
        if state is None:
            continue
        manifest.cka_merged[side.name] = artifacts.publish_bytes(out_url, f"cka/{side.name}/merged.npz", state_to_bytes(state))
        try:
            results[side.name] = np.asarray(reduction.result("biased")).tolist()
        except ValueError as exc:  # e.g. too few frames for a minibatch
            log.warning("cka %s: no result (%s)", side.name, exc)
    manifest.complete = True
    return results


def extract(
    model_spec: str,
    data_url: str,
    out_url: str,
    config: ExtractConfig | None = None,
    *,
    after_shard: AfterShard | None = None,
) -> ExtractSummary:
    """Extract every layer of ``model_spec`` over the audio shards at ``data_url`` into a cache at ``out_url``.

    Resumable: shards already in the cache manifest are skipped. ``after_shard(task, pool)`` is
    called after each completed shard once new work was handed out (fault-injection hook).
    """
    config = config or ExtractConfig()
    t0 = time.perf_counter()
    source = read_manifest(data_url)
    init_ray()  # respects RAY_ADDRESS; starts an embedded Ray otherwise
    res = plan_resources(ray.cluster_resources(), config)
    pool = ModelActorPool(model_spec, config, res, worker_env(config.env_vars))
    try:
        desc = ray.get(pool.actors[0].describe.remote())
        meta = _metadata(model_spec, data_url, config, desc, source)
        _prepare_output(out_url, meta, config.overwrite)
        manifest = read_cache_manifest(out_url)
        by_name = {s.name: s for s in source.shards}
        manifest.shards = {k: v for k, v in manifest.shards.items() if k in by_name and v.source_sha256 == by_name[k].sha256}
        todo = [ShardTask(storage.join(data_url, s.name), s.name, s.sha256) for s in source.shards if s.name not in manifest.shards]
        skipped = len(source.shards) - len(todo)
        if config.max_shards is not None:
            todo = todo[: config.max_shards]
        shifts = _shifts(out_url, config, pool, storage.join(data_url, source.shards[0].name)) if source.shards else {}
        summary = ExtractSummary(out_url=out_url, model_spec=model_spec, mode=desc["mode"], tiers=config.tiers,
                                 shards_total=len(source.shards), shards_written=0, shards_skipped=skipped, complete=False)
        progress = AudioProgress(sum(by_name[t.name].rows for t in todo), sum(by_name[t.name].audio_seconds for t in todo), config.progress)

        def on_result(task: ShardTask, outcome: Any) -> None:
            manifest.shards[task.name] = outcome.record
            manifest.recount()
            storage.write_json(storage.join(out_url, cf.MANIFEST_NAME), manifest.model_dump(mode="json"))
            summary.shards_written += 1
            summary.written_shards.append(task.name)
            summary.utterances += outcome.utterances
            summary.audio_seconds += outcome.audio_seconds
            summary.model_seconds += outcome.model_seconds
            summary.retried_alone += outcome.retried_alone
            summary.shard_seconds += outcome.record.wall_seconds
            summary.actor_peak_rss_mb = max(summary.actor_peak_rss_mb, outcome.stats.get("peak_rss_mb", 0.0))
            progress.update(outcome.utterances + len(outcome.record.quarantined), outcome.audio_seconds)

        def on_error(task: ShardTask, exc: BaseException) -> None:
            log.error("shard %s failed: %s", task.name, exc)
            summary.shards_failed[task.name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"

        try:
            pool.run(todo, out_url, shifts, on_result, on_error, after_shard)
        finally:
            progress.close()
        summary.actors_started = len(pool.actors)
    finally:
        pool.shutdown()
    if len(manifest.shards) == len(source.shards):
        summary.cka_results = _finalise(out_url, data_url, source, manifest, config)
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

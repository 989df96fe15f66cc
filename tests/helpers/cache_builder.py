"""Build a real activation cache without Ray: the extraction's own shard worker, metadata and manifest."""

from __future__ import annotations

from layerlab import storage
from layerlab.cache import format as cf


def copy_cache(src: str, dst) -> str:
    """A private copy of a cache folder (tests that damage or edit files)."""
    import shutil

    shutil.copytree(src, dst)
    return str(dst)


def build_cache_inline(model, data_url: str, out_url: str, tier: str = "both", mode: str = "bucketed", complete: bool = True, max_shards: int | None = None,
                       **config) -> str:
    """Extract ``model`` over every (or the first ``max_shards``) shard of ``data_url`` into ``out_url`` in this process.

    ``config``: further ExtractConfig fields (e.g. ``frames_select``, ``compression``).
    """
    from layerlab.data.manifest import read_manifest
    from layerlab.extract.config import ExtractConfig
    from layerlab.extract.pipeline import _metadata, selection_json
    from layerlab.extract.shard_worker import ShardExtractor, describe_model

    config = ExtractConfig(tier=tier, mode=mode, batch_seconds=3.0, progress=False, **config)
    source = read_manifest(data_url)
    worker = ShardExtractor(model, config, mode)
    meta = _metadata(model.spec, data_url, config, describe_model(model, mode), source)
    if meta.frames_selection is not None:
        storage.write_json(storage.join(out_url, cf.FRAMES_SELECTION_NAME), {"sha256": meta.frames_selection["sha256"], **selection_json(config)})
    storage.write_json(storage.join(out_url, cf.METADATA_NAME), meta.model_dump(mode="json"))
    manifest = cf.CacheManifest()
    for s in source.shards[:max_shards]:
        manifest.shards[s.name] = worker.run(storage.join(data_url, s.name), s.name, s.sha256, out_url, {}).record
    manifest.recount()
    manifest.complete = complete and len(manifest.shards) == len(source.shards)
    storage.write_json(storage.join(out_url, cf.MANIFEST_NAME), manifest.model_dump(mode="json"))
    return out_url

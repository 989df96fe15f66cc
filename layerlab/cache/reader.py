"""Read an activation cache (no Ray): metadata, streamed pooled and frames tiers, quarantine, CKA states.

Readers see only shards listed in ``manifest.json``, so files of an interrupted task never leak in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from layerlab import storage
from layerlab.extract import cache_format as cf


@dataclass
class Cache:
    """An opened cache: its URL, metadata and manifest."""

    url: str
    metadata: cf.CacheMetadata
    manifest: cf.CacheManifest

    def shard_files(self, tier: str) -> list[str]:
        """URLs of the completed shards of ``tier`` in source-shard order."""
        if tier not in self.metadata.tiers:
            raise ValueError(f"{self.url}: tier {tier!r} was not extracted (tiers: {', '.join(self.metadata.tiers)})")
        return [storage.join(self.url, rec.files[tier].name) for _, rec in sorted(self.manifest.shards.items())]

    def _layers(self, layers: Sequence[str] | None) -> list[str]:
        if layers is None:
            return list(self.metadata.layer_names)
        for name in layers:
            self.metadata.layer_index(name)
        return list(layers)


def read_metadata(url: str) -> cf.CacheMetadata:
    """``metadata.json`` of the cache at ``url``."""
    doc_url = storage.join(url, cf.METADATA_NAME)
    if not storage.exists(doc_url):
        raise FileNotFoundError(f"{url}: not an activation cache (no {cf.METADATA_NAME}); create one with `layerlab extract`")
    return cf.CacheMetadata.model_validate(storage.read_json(doc_url))


def read_cache_manifest(url: str) -> cf.CacheManifest:
    """``manifest.json`` of the cache (an empty manifest if no shard completed yet)."""
    doc_url = storage.join(url, cf.MANIFEST_NAME)
    if not storage.exists(doc_url):
        return cf.CacheManifest()
    return cf.CacheManifest.model_validate(storage.read_json(doc_url))


def open_cache(url: str) -> Cache:
    """Open the cache at ``url`` (metadata + manifest)."""
    return Cache(url=str(url).rstrip("/"), metadata=read_metadata(url), manifest=read_cache_manifest(url))


def iter_pooled(url: str | Cache, layers: Sequence[str] | None = None, batch_rows: int = 1024) -> Iterator[pa.RecordBatch]:
    """Stream pooled rows: id, speaker, num_samples, labels, splits and mean/std of ``layers``."""
    cache = url if isinstance(url, Cache) else open_cache(url)
    names = cache._layers(layers)
    columns = ["id", "speaker", "num_samples", "labels", "splits"] + [cf.mean_column(n) for n in names] + [cf.std_column(n) for n in names]
    for shard in cache.shard_files("pooled"):
        with storage.open_input(shard) as f:
            yield from pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=columns)


def pooled_matrix(url: str | Cache, layer: str, stat: str = "mean") -> tuple[list[str], np.ndarray]:
    """All utterance ids and their ``stat`` (mean or std) of one layer as an ``[N, D]`` float32 array."""
    if stat not in ("mean", "std"):
        raise ValueError(f"stat must be 'mean' or 'std', got {stat!r}")
    cache = url if isinstance(url, Cache) else open_cache(url)
    ids: list[str] = []
    parts: list[np.ndarray] = []
    column = cf.mean_column(layer) if stat == "mean" else cf.std_column(layer)
    for batch in iter_pooled(cache, [layer]):
        ids.extend(batch.column("id").to_pylist())
        col = batch.column(column)
        parts.append(col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1))
    dim = cache.metadata.dims[cache.metadata.layer_index(layer)]
    return ids, (np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros((0, dim), np.float32))


@dataclass
class FramesRow:
    """One utterance of the frames tier: its speaker and fp16 ``[T_l, D_l]`` valid frames per requested layer."""

    id: str
    speaker: str
    frames: dict[str, np.ndarray]


def iter_frames(url: str | Cache, layers: Sequence[str] | None = None, batch_rows: int = 16) -> Iterator[FramesRow]:
    """Stream frames-tier utterances (only the requested layers' columns are read)."""
    cache = url if isinstance(url, Cache) else open_cache(url)
    names = cache._layers(layers)
    dims = {n: cache.metadata.dims[cache.metadata.layer_index(n)] for n in names}
    columns = ["id"] + [cf.frames_column(n) for n in names]
    for shard in cache.shard_files("frames"):
        with storage.open_input(shard) as f:
            pf = pq.ParquetFile(f)
            extra = ["speaker"] if "speaker" in pf.schema_arrow.names else []  # caches written before the column existed
            for batch in pf.iter_batches(batch_size=batch_rows, columns=columns + extra):
                yield from _frames_rows(batch, names, dims)


def _frames_rows(batch: pa.RecordBatch, names: list[str], dims: dict[str, int]) -> Iterator[FramesRow]:
    ids = batch.column("id").to_pylist()
    speakers = batch.column("speaker").to_pylist() if "speaker" in batch.schema.names else [""] * len(ids)
    per_layer: dict[str, list[np.ndarray]] = {}
    for n in names:
        col = batch.column(cf.frames_column(n))
        offsets = col.offsets.to_numpy()
        values = col.values.to_numpy(zero_copy_only=False)
        per_layer[n] = [values[offsets[i] : offsets[i + 1]].reshape(-1, dims[n]) for i in range(len(ids))]
    for i, uid in enumerate(ids):
        yield FramesRow(id=uid, speaker=speakers[i] or "", frames={n: per_layer[n][i] for n in names})


def read_quarantine(url: str) -> pa.Table:
    """The cache's quarantine table (id, source, reason, stage); written when a run completes."""
    manifest = read_cache_manifest(url)
    if manifest.quarantine is None:
        rows = [q.model_dump() for rec in manifest.shards.values() for q in rec.quarantined]
        return pa.Table.from_pylist(rows, schema=cf.QUARANTINE_SCHEMA)
    with storage.open_input(storage.join(url, manifest.quarantine.name)) as f:
        return pq.read_table(f)


def cka_shard_states(url: str, name: str) -> dict[str, dict[str, Any]]:
    """Per-shard CKA partial states of side-output ``name``, keyed by source shard (for bootstrap/reducer)."""
    from layerlab.cka.state_io import state_from_bytes

    manifest = read_cache_manifest(url)
    out = {}
    for shard, rec in sorted(manifest.shards.items()):
        if name not in rec.cka:
            raise KeyError(f"{url}: shard {shard} has no CKA side-output {name!r}")
        out[shard] = state_from_bytes(storage.read_bytes(storage.join(url, rec.cka[name].name)))
    return out


def verify_cache(url: str) -> list[str]:
    """Check every listed file against its checksum; returns problems (empty when intact)."""
    manifest = read_cache_manifest(url)
    problems = []
    entries = [e for rec in manifest.shards.values() for e in list(rec.files.values()) + list(rec.cka.values())]
    entries += ([manifest.quarantine] if manifest.quarantine else []) + list(manifest.cka_merged.values())
    for e in entries:
        file_url = storage.join(url, e.name)
        if not storage.exists(file_url):
            problems.append(f"{file_url}: missing")
        elif storage.sha256_url(file_url) != e.sha256:
            problems.append(f"{file_url}: checksum mismatch")
    return problems

"""CKA's view of an activation cache: a thin adapter over :mod:`layerlab.extract.cache_reader`.

Frame level reads the frames tier (``frames/<layer>`` reshaped with ``num_frames/<layer>``);
utterance level reads the pooled tier's ``mean/<layer>``. Only shards listed in ``manifest.json``
are read (files of an interrupted extraction never leak in), and each shard is streamed row
group by row group, so a multi-GB frames shard is never held in memory whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import ValidationError

from layerlab import storage
from layerlab.extract import cache_format as cf
from layerlab.extract.cache_reader import Cache, open_cache

#: the cache tier each CKA level reads
LEVEL_TIERS = {"frame": "frames", "utterance": "pooled"}


@dataclass
class CacheInfo:
    """What CKA needs from a cache: its layers (from ``metadata.json``) and the opened cache (manifest)."""

    url: str
    model_spec: str
    layer_names: list[str]
    dims: list[int]
    frame_rates_hz: list[float | None]  # None: an utterance-level layer (T = 1), usable at --level utterance only
    tiers: list[str]
    cache: Cache = field(repr=False)


@dataclass
class Utterance:
    """One cached utterance: per-layer ``(T_l, d_l)`` float32 frames (``(1, d_l)`` means at utterance level).

    ``speaker`` is None when the shard has no speaker column (frames tiers written before it existed).
    """

    id: str
    speaker: str | None
    layers: list[np.ndarray]


def read_cache_info(url: str) -> CacheInfo:
    """Open the cache at ``url``; errors name the metadata file and the reason."""
    try:
        cache = open_cache(url)
    except ValidationError as exc:
        raise ValueError(f"{storage.join(str(url), cf.METADATA_NAME)}: not valid activation-cache metadata: {exc}") from exc
    m = cache.metadata
    if not len(m.layer_names) == len(m.dims) == len(m.frame_rates_hz):
        raise ValueError(f"{storage.join(cache.url, cf.METADATA_NAME)}: layer_names, dims and frame_rates_hz have different lengths")
    rates = [None if r is None else float(r) for r in m.frame_rates_hz]
    return CacheInfo(cache.url, m.model_spec, list(m.layer_names), [int(d) for d in m.dims], rates, list(m.tiers), cache)


def side_output_info(info: CacheInfo, name: str) -> CacheInfo:
    """``info`` narrowed to the layers of the extraction's CKA side-output ``name`` (from ``metadata.json``)."""
    sides = {str(c.get("name")): c for c in info.cache.metadata.cka}
    if name not in sides:
        raise ValueError(f"{storage.join(info.url, cf.METADATA_NAME)}: no CKA side-output {name!r} (recorded: {', '.join(sides) or 'none'})")
    layers = sides[name].get("layers") or [n for n, r in zip(info.layer_names, info.frame_rates_hz) if r is not None]
    idx = [info.layer_names.index(n) for n in layers]
    return replace(info, layer_names=list(layers), dims=[info.dims[i] for i in idx], frame_rates_hz=[info.frame_rates_hz[i] for i in idx])


def side_output_estimator(info: CacheInfo, name: str) -> str:
    """The accumulator kind (``feature`` or ``minibatch``) of side-output ``name``."""
    return str(next(c for c in info.cache.metadata.cka if c.get("name") == name).get("estimator", "feature"))


def tier_for(info: CacheInfo, level: str) -> str:
    """The tier read at ``level``; a clear error when that tier was not extracted into this cache."""
    if level not in LEVEL_TIERS:
        raise ValueError(f"level: must be one of {sorted(LEVEL_TIERS)}, got {level!r}")
    tier = LEVEL_TIERS[level]
    if tier not in info.tiers:
        other = "utterance" if level == "frame" else "frame"
        raise ValueError(
            f"{info.url}: --level {level} needs the {tier} tier, but this cache holds only {', '.join(info.tiers)}; "
            f"re-extract with `layerlab extract --tier both` (or --tier {tier}) or use --level {other}"
        )
    return tier


def shard_urls(info: CacheInfo, level: str) -> dict[str, str]:
    """Shard file name -> URL of the manifest's completed shards of the tier read at ``level``."""
    urls = info.cache.shard_files(tier_for(info, level))
    if not urls:
        raise FileNotFoundError(f"{storage.join(info.url, cf.MANIFEST_NAME)}: no completed shards yet (is the extraction still running?)")
    return {u.rsplit("/", 1)[-1]: u for u in urls}


def read_utterances(shard_url: str, info: CacheInfo, level: str, batch_rows: int = 8) -> Iterator[Utterance]:
    """Stream one shard's utterances (``batch_rows`` at a time) with every layer as float32."""
    frame = tier_for(info, level) == "frames"
    values = [cf.frames_column(n) if frame else cf.mean_column(n) for n in info.layer_names]
    counts = [cf.num_frames_column(n) for n in info.layer_names] if frame else []
    with storage.open_input(shard_url) as f:
        pf = pq.ParquetFile(f)
        present = set(pf.schema_arrow.names)
        missing = [c for c in ["id", *counts, *values] if c not in present]
        if missing:
            raise ValueError(f"{shard_url}: missing columns {missing[:3]} of the {LEVEL_TIERS[level]} tier")
        speaker = ["speaker"] if "speaker" in present else []
        for batch in pf.iter_batches(batch_size=batch_rows, columns=["id", *speaker, *counts, *values]):
            yield from _batch_utterances(batch, shard_url, info, values, counts)


def _batch_utterances(batch: pa.RecordBatch, shard_url: str, info: CacheInfo, values: list[str], counts: list[str]) -> Iterator[Utterance]:
    """Split one record batch into utterances, checking each row's size against num_frames (or 1) x dim."""
    ids = [str(i) for i in batch.column("id").to_pylist()]
    speakers = [s or "" for s in batch.column("speaker").to_pylist()] if "speaker" in batch.schema.names else [None] * len(ids)
    per_layer: list[list[np.ndarray]] = []
    for li, (name, dim) in enumerate(zip(info.layer_names, info.dims)):
        col = batch.column(values[li])
        sizes = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        frames = batch.column(counts[li]).to_numpy(zero_copy_only=False) if counts else np.ones(len(ids), dtype=np.int64)
        bad = np.flatnonzero(sizes != frames.astype(np.int64) * dim)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"{shard_url}: utterance {ids[i]} layer {name} has {sizes[i]} values, expected {int(frames[i])} frames x dim {dim}")
        flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        per_layer.append([p.reshape(-1, dim) for p in np.split(flat, np.cumsum(sizes)[:-1])])
    for i, uid in enumerate(ids):
        yield Utterance(uid, speakers[i], [layer[i] for layer in per_layer])

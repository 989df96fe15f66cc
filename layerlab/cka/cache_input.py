"""Minimal reader of the activation cache (issue 5) for CKA: metadata, shards, per-utterance layers.

Assumed layout (to be reconciled with the extraction stage): ``CACHE/metadata.json`` with
``model_spec``, ``layer_names``, ``dims``, ``frame_rates_hz``; Parquet shards under
``CACHE/frames/`` (rows: ``id``, ``num_frames``, ``speaker``?, ``frames/<layer>`` = flat
list<float16> of num_frames*dim) and ``CACHE/pooled/`` (rows: ``id``, ``speaker``,
``mean/<layer>``, ``std/<layer>``). Shards directly under ``CACHE`` are accepted too.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Iterator

import numpy as np

TIERS = {"frame": ("frames", "frames/"), "utterance": ("pooled", "mean/")}


@dataclass
class CacheInfo:
    """What CKA needs from a cache's metadata."""

    url: str
    model_spec: str
    layer_names: list[str]
    dims: list[int]
    frame_rates_hz: list[float | None]  # None: an utterance-level layer (T = 1), usable at --level utterance only


@dataclass
class Utterance:
    """One cached utterance: per-layer ``(T_l, d_l)`` float32 frames (``(1, d_l)`` means at utterance level)."""

    id: str
    speaker: str
    layers: list[np.ndarray]


def read_cache_info(url: str) -> CacheInfo:
    """Parse ``metadata.json`` of a cache folder; errors name the file and the missing field."""
    from layerlab import storage

    meta_url = storage.join(url, "metadata.json")
    if not storage.exists(meta_url):
        raise FileNotFoundError(f"{meta_url}: activation cache metadata not found (is {url} a cache folder?)")
    meta = storage.read_json(meta_url)
    for key in ("layer_names", "dims"):
        if key not in meta:
            raise ValueError(f"{meta_url}: missing field {key!r}")
    names = [str(n) for n in meta["layer_names"]]
    dims = meta["dims"] if isinstance(meta["dims"], list) else [meta["dims"]] * len(names)
    rates = meta.get("frame_rates_hz") or [50.0] * len(names)
    rates = rates if isinstance(rates, list) else [rates] * len(names)
    if not len(names) == len(dims) == len(rates):
        raise ValueError(f"{meta_url}: layer_names, dims and frame_rates_hz have different lengths")
    return CacheInfo(url, str(meta.get("model_spec", "")), names, [int(d) for d in dims], [None if r is None else float(r) for r in rates])


def shard_urls(url: str, level: str) -> dict[str, str]:
    """Shard file name -> URL for the tier used at ``level`` (``frame`` or ``utterance``)."""
    from layerlab import storage

    if level not in TIERS:
        raise ValueError(f"level: must be one of {sorted(TIERS)}, got {level!r}")
    tier_dir = storage.join(url, TIERS[level][0])
    base = tier_dir if storage.exists(tier_dir) else url
    files = storage.list_files(base, suffix=".parquet")
    if not files:
        raise FileNotFoundError(f"{base}: no Parquet shards for the {level}-level tier")
    return {f.rstrip("/").rsplit("/", 1)[-1]: f for f in sorted(files)}


def read_utterances(shard_url: str, info: CacheInfo, level: str) -> Iterator[Utterance]:
    """Utterances of one shard with every layer as float32 (frames reshaped to ``(T, d)``)."""
    import pyarrow.parquet as pq

    from layerlab import storage

    prefix = TIERS[level][1]
    table = pq.read_table(io.BytesIO(storage.read_bytes(shard_url)))
    cols = [f"{prefix}{name}" for name in info.layer_names]
    missing = [c for c in cols + ["id"] if c not in table.column_names]
    if missing:
        raise ValueError(f"{shard_url}: missing columns {missing[:3]} for the {level}-level tier")
    speakers = table.column("speaker").to_pylist() if "speaker" in table.column_names else [""] * table.num_rows
    ids = table.column("id").to_pylist()
    data = [table.column(c).to_pylist() for c in cols]
    for row, uid in enumerate(ids):
        layers = []
        for li, d in enumerate(info.dims):
            values = np.asarray(data[li][row], dtype=np.float32)
            if values.size % d:
                raise ValueError(f"{shard_url}: utterance {uid} layer {info.layer_names[li]} has {values.size} values, not a multiple of dim {d}")
            layers.append(values.reshape(-1, d))
        yield Utterance(str(uid), str(speakers[row] or ""), layers)

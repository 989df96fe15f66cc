"""CKA's view of an activation cache, through the one reader (:mod:`layerlab.cache`).

Frame level reads the frames tier; utterance level reads the pooled tier's means, or pools the
frames tier when the cache has no pooled tier. Only shards listed in ``manifest.json`` are read,
each verified as it is opened, and each is streamed row group by row group.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator, Sequence

import numpy as np

from layerlab import storage
from layerlab.cache import format as cf
from layerlab.cache.reader import CacheError, CacheReader, open_cache

#: the cache tier each CKA level reads
LEVEL_TIERS = {"frame": "frames", "utterance": "pooled"}


@dataclass
class CacheInfo:
    """What CKA needs from a cache: the chosen layers (names, dims, rates) and the opened reader."""

    url: str
    model_spec: str
    layer_names: list[str]
    dims: list[int]
    frame_rates_hz: list[float | None]  # None: an utterance-level layer (T = 1), usable at --level utterance only
    tiers: list[str]
    cache: CacheReader = field(repr=False)
    dropped: list[str] = field(default_factory=list)  # utterance-level layers left out at frame level

    @property
    def name(self) -> str:
        """A short model name for titles (``s3prl:wavlm_base`` -> ``wavlm_base``)."""
        return (self.model_spec or self.url).split(":")[-1].rstrip("/").rsplit("/", 1)[-1]


@dataclass
class Utterance:
    """One cached utterance: per-layer ``(T_l, d_l)`` float32 frames (``(1, d_l)`` means at utterance level).

    ``speaker`` is None when the shard has no speaker column (frames tiers written before it existed).
    """

    id: str
    speaker: str | None
    layers: list[np.ndarray]


def read_cache_info(url: str, *, verify: bool = True, allow_partial: bool = False, layers: str | Sequence[str] | None = None) -> CacheInfo:
    """Open the cache at ``url`` with the chosen layers (names or ranges; None = all); errors name the cache."""
    cache = open_cache(url, verify=verify, allow_partial=allow_partial)
    return narrow(CacheInfo(cache.url, cache.metadata.model_spec, [], [], [], list(cache.metadata.tiers), cache), cache.layer_names(layers))


def narrow(info: CacheInfo, names: list[str]) -> CacheInfo:
    """``info`` restricted to the layers ``names`` (in the given order)."""
    metas = [info.cache.layer(n) for n in names]
    return replace(info, layer_names=list(names), dims=[m.dim for m in metas], frame_rates_hz=[m.frame_rate_hz for m in metas])


def frame_level_only(info: CacheInfo) -> CacheInfo:
    """Drop utterance-level layers (they have no frames); the dropped names are kept for the output note."""
    keep = [n for n, r in zip(info.layer_names, info.frame_rates_hz) if r is not None]
    dropped = [n for n in info.layer_names if n not in keep]
    if not keep:
        raise CacheError(f"{info.url}: every selected layer is utterance-level ({', '.join(dropped)}); use --level utterance")
    out = narrow(info, keep)
    out.dropped = dropped
    return out


def side_output_info(info: CacheInfo, name: str) -> CacheInfo:
    """``info`` narrowed to the layers of the extraction's CKA side-output ``name`` (from ``metadata.json``)."""
    sides = {str(c.get("name")): c for c in info.cache.metadata.cka}
    if name not in sides:
        raise CacheError(f"{storage.join(info.url, cf.METADATA_NAME)}: no CKA side-output {name!r} (recorded: {', '.join(sides) or 'none'})")
    meta = info.cache.metadata
    layers = sides[name].get("layers") or [n for n, r in zip(meta.layer_names, meta.frame_rates_hz) if r is not None]
    return narrow(info, list(layers))


def side_output_estimator(info: CacheInfo, name: str) -> str:
    """The accumulator kind (``feature`` or ``minibatch``) of side-output ``name``."""
    return str(next(c for c in info.cache.metadata.cka if c.get("name") == name).get("estimator", "feature"))


def tier_for(info: CacheInfo, level: str) -> str:
    """The tier read at ``level`` (utterance level pools the frames tier when there is no pooled tier)."""
    if level not in LEVEL_TIERS:
        raise ValueError(f"level: must be one of {sorted(LEVEL_TIERS)}, got {level!r}")
    tier = LEVEL_TIERS[level]
    if tier in info.tiers:
        return tier
    if level == "utterance" and "frames" in info.tiers:
        return "frames"
    raise CacheError(
        f"{info.url}: --level {level} needs the {tier} tier, but this cache holds only {', '.join(info.tiers)}; "
        f"re-extract with `layerlab extract --tier both` (or --tier {tier}) or use --level utterance"
    )


def shard_names(info: CacheInfo, level: str) -> list[str]:
    """Source shard names of the completed shards of the tier read at ``level``."""
    return [name for name, _ in info.cache.tier_entries(tier_for(info, level))]


def read_utterances(shard: str, info: CacheInfo, level: str, batch_rows: int = 8) -> Iterator[Utterance]:
    """Stream one shard's utterances with every chosen layer as float32."""
    tier = tier_for(info, level)
    if tier == "pooled":
        for uid, speaker, vectors in info.cache.iter_shard_pooled(shard, info.layer_names):
            yield Utterance(uid, speaker, [v[None, :] for v in vectors])
        return
    has_speaker = info.cache.frames_have_speakers()
    for row in info.cache.iter_shard_frames(shard, info.layer_names, batch_rows):
        frames = [row.frames[n].astype(np.float32) for n in info.layer_names]
        if level == "utterance":  # pooled from the frames tier: the mean over valid frames, as the pooled tier holds
            frames = [f.mean(axis=0, keepdims=True) if len(f) else np.zeros((1, f.shape[1]), np.float32) for f in frames]
        yield Utterance(row.id, row.speaker if has_speaker else None, frames)


def utterance_index(info: CacheInfo, level: str) -> dict[str, tuple[str, list[int]]]:
    """``{id: (speaker, [valid frames of each chosen layer])}`` of every completed shard, from small columns only.

    What a sample is planned from (:mod:`layerlab.cka.sample_measures`): ids, speakers and frame counts, without
    decoding a frame. At utterance level every layer counts 1. The files are checksummed when the pass reads them.
    """
    import pyarrow.parquet as pq

    tier = tier_for(info, level)
    out: dict[str, tuple[str, list[int]]] = {}
    for _, entry in info.cache.tier_entries(tier):
        with storage.open_input(storage.join(info.url, entry.name)) as f:
            pf = pq.ParquetFile(f)
            present = set(pf.schema_arrow.names)
            counts = [cf.num_frames_column(n) for n in info.layer_names] if tier == "frames" else []
            cols = ["id"] + (["speaker"] if "speaker" in present else []) + counts
            table = pf.read(columns=cols)
        ids = [str(i) for i in table.column("id").to_pylist()]
        speakers = [str(s or "") for s in table.column("speaker").to_pylist()] if "speaker" in cols else [""] * len(ids)
        frames = [table.column(c).to_numpy(zero_copy_only=False).astype(np.int64) for c in counts]
        for k, uid in enumerate(ids):
            out[uid] = (speakers[k], [int(x[k]) for x in frames] if (tier == "frames" and level == "frame") else [1] * len(info.layer_names))
    return out

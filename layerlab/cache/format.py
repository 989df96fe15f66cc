"""The activation-cache format: file names, Parquet schemas, ``metadata.json`` and ``manifest.json``.

Layout of a cache at ``<cache>`` (any fsspec URL)::

    metadata.json                  CacheMetadata: model, layers, dtypes, mode, source, tiers
    frames_selection.json          only when the frames tier holds a selection: id -> whole or [start_s, seconds] crop
    manifest.json                  CacheManifest: completed shards per tier (rows, bytes, sha256), counts
    pooled/shard-00003.parquet     one row per utterance: id, speaker, num_samples, labels, splits,
                                   mean/<layer>, std/<layer> (list<float32>, dim D_l)
    frames/shard-00003.parquet     one row per utterance: id, speaker, num_frames/<layer> (int32),
                                   frames/<layer> (binary: num_frames * D_l little-endian fp16, row-major;
                                   format version 1 stored a flat list<float16>, still read)
    cka/<name>/shard-00003.npz     per-shard CKA partial state (layerlab.cka.state_io npz)
    cka/<name>/shift.npz           the shift shared by every shard's FeatureCKA state
    cka/<name>/merged.npz          merge of all committed shards (written when the run completes)
    quarantine.parquet             id, source, reason, stage ("ingest"... from the audio shards, "model")

Each layer records its hop (samples per frame) and frame-count convention (``layers`` in the
metadata; derived from the model spec for caches written before they were recorded), so sample
spans map to frame indices exactly (:class:`layerlab.cache.layers.LayerMeta`).

Only files listed in ``manifest.json`` are part of the cache: a file left by a crashed task is
invisible to readers and is overwritten by the rerun. Nothing here imports Ray.
"""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, Field

from layerlab.artifacts import MANIFEST_NAME, QUARANTINE_NAME, QUARANTINE_SCHEMA, FileEntry, ManifestBase, QuarantineRow, publish_bytes
from layerlab.data.tasks import TaskSpec

__all__ = [
    "CacheManifest", "CacheMetadata", "FileEntry", "FORMAT_NAME", "FRAMES_SELECTION_NAME", "LayerRecord", "MANIFEST_NAME", "METADATA_NAME", "QUARANTINE_NAME",
    "QUARANTINE_SCHEMA", "QuarantineRow", "ShardRecord", "SourceInfo", "TIERS", "cka_file", "frames_column", "frames_schema",
    "mean_column", "num_frames_column", "pooled_schema", "publish_bytes", "shard_stem", "std_column", "tier_file",
]

FORMAT_NAME = "layerlab-activation-cache"
FORMAT_VERSION = 2  # 2: frames/<layer> as raw fp16 bytes (Parquet's list<float16> writes 7-13x slower: benchmarks/frames_format.py)
METADATA_NAME = "metadata.json"
#: which utterances (or crops) the frames tier holds when it holds a selection (layerlab.data.selection.FramesSelection JSON)
FRAMES_SELECTION_NAME = "frames_selection.json"
TIERS = ("pooled", "frames")


def mean_column(layer: str) -> str:
    """Pooled-tier column holding the per-utterance mean of ``layer``."""
    return f"mean/{layer}"


def std_column(layer: str) -> str:
    """Pooled-tier column holding the per-utterance standard deviation (ddof=0) of ``layer``."""
    return f"std/{layer}"


def frames_column(layer: str) -> str:
    """Frames-tier column: the fp16 frames of ``layer`` (num_frames * dim values, row-major)."""
    return f"frames/{layer}"


def num_frames_column(layer: str) -> str:
    """Frames-tier column: number of valid frames of ``layer``."""
    return f"num_frames/{layer}"


def pooled_schema(layer_names: list[str]) -> pa.Schema:
    """Schema of a pooled-tier shard."""
    fields = [
        ("id", pa.string()),
        ("speaker", pa.string()),
        ("num_samples", pa.int64()),
        ("labels", pa.map_(pa.string(), pa.string())),
        ("splits", pa.map_(pa.string(), pa.string())),
    ]
    for name in layer_names:
        fields.append((mean_column(name), pa.list_(pa.float32())))
    for name in layer_names:
        fields.append((std_column(name), pa.list_(pa.float32())))
    return pa.schema(fields)


FRAMES_FIELD_METADATA = {"dtype": "float16", "byteorder": "little", "shape": "[num_frames, dim]", "order": "row-major"}


def frames_schema(layer_names: list[str]) -> pa.Schema:
    """Schema of a frames-tier shard (``speaker`` too, so frame-level bootstrap can group by speaker)."""
    fields: list[tuple[str, pa.DataType]] = [("id", pa.string()), ("speaker", pa.string())]
    for name in layer_names:
        fields.append((num_frames_column(name), pa.int32()))
    for name in layer_names:
        fields.append(pa.field(frames_column(name), pa.binary(), metadata=FRAMES_FIELD_METADATA))
    return pa.schema(fields)


def shard_stem(source_name: str) -> str:
    """``shards/shard-00003.parquet`` -> ``shard-00003``."""
    return source_name.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def tier_file(tier: str, source_name: str) -> str:
    """Cache-relative path of one tier's shard mirroring the audio shard ``source_name``."""
    return f"{tier}/{shard_stem(source_name)}.parquet"


def cka_file(name: str, source_name: str) -> str:
    """Cache-relative path of one shard's CKA partial state for side-output ``name``."""
    return f"cka/{name}/{shard_stem(source_name)}.npz"


class SourceInfo(BaseModel):
    """Which audio dataset the cache was extracted from."""

    url: str
    dataset: str
    manifest_checksum: str
    shards: int
    utterances: int
    audio_seconds: float


class LayerRecord(BaseModel):
    """How one layer's frames relate to samples: hop and frame-count convention (see ``LayerMeta``)."""

    name: str
    hop_samples: int | None = None  # None: utterance level
    frame_convention: str = "utterance"  # stride | centered | window | utterance
    window_samples: int | None = None  # for "window": frames = (num_samples - window) // hop + 1


class CacheMetadata(BaseModel):
    """``metadata.json``: everything needed to interpret the cache without the model."""

    format: Literal["layerlab-activation-cache"] = FORMAT_NAME
    version: int = FORMAT_VERSION
    model_spec: str
    layer_names: list[str]
    dims: list[int]
    frame_rates_hz: list[float | None]
    sample_rate: int
    num_parameters: int
    padding_invariant: bool
    dtype: dict[str, str] = Field(default_factory=lambda: {"frames": "float16", "pooled": "float32"})
    mode: Literal["bucketed", "padded", "unbatched"]
    batch: dict[str, Any]
    tiers: list[str]
    source: SourceInfo
    cka: list[dict[str, Any]] = Field(default_factory=list)
    layers: list[LayerRecord] = Field(default_factory=list)  # empty in caches written before it was recorded
    tasks: dict[str, TaskSpec] = Field(default_factory=dict)  # copied from the source dataset's manifest
    layerlab_version: str = ""
    # a partial frames tier: {"sha256", "utterances", "cropped", "purposes"} of FRAMES_SELECTION_NAME (None: every utterance)
    frames_selection: dict[str, Any] | None = None

    def identity(self) -> dict[str, Any]:
        """Fields that must match for a rerun to extend this cache (not versions or timings)."""
        doc = self.model_dump(mode="json")
        for key in ("layerlab_version", "layers", "tasks"):  # descriptive, derivable: not part of the identity
            doc.pop(key, None)
        doc["source"].pop("url", None)  # the same dataset named another way (relative, absolute, file://) resumes
        return doc

    def layer_index(self, name: str) -> int:
        """Position of layer ``name``; KeyError listing the layers otherwise."""
        if name not in self.layer_names:
            raise KeyError(f"no layer {name!r} in this cache; layers: {', '.join(self.layer_names)}")
        return self.layer_names.index(name)


class ShardRecord(BaseModel):
    """A completed shard: its files per tier, CKA states, and what was quarantined in the model."""

    source: str
    source_sha256: str
    kept: int
    audio_seconds: float
    files: dict[str, FileEntry] = Field(default_factory=dict)
    cka: dict[str, FileEntry] = Field(default_factory=dict)
    quarantined: list[QuarantineRow] = Field(default_factory=list)
    wall_seconds: float = 0.0


class CacheManifest(ManifestBase):
    """``manifest.json``: completed shards keyed by source shard name, counts, completion flag."""

    format: Literal["layerlab-activation-cache"] = FORMAT_NAME
    version: int = FORMAT_VERSION
    shards: dict[str, ShardRecord] = Field(default_factory=dict)
    complete: bool = False
    kept: int = 0
    quarantined_source: int = 0
    quarantined_model: int = 0
    audio_seconds: float = 0.0
    cka_merged: dict[str, FileEntry] = Field(default_factory=dict)

    def recount(self) -> None:
        """Recompute the kept / model-quarantine / audio totals from the shard records."""
        self.kept = sum(r.kept for r in self.shards.values())
        self.quarantined_model = sum(len(r.quarantined) for r in self.shards.values())
        self.audio_seconds = round(sum(r.audio_seconds for r in self.shards.values()), 6)

    def tier_bytes(self, tier: str) -> int:
        """Total bytes of one tier's completed shards."""
        return sum(r.files[tier].bytes for r in self.shards.values() if tier in r.files)

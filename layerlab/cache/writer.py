"""Buffered Parquet writers for the two cache tiers: columnar buffers, row groups by bytes, atomic publish."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from layerlab import artifacts, storage
from layerlab.cache import format as cf


@dataclass
class UtteranceFeatures:
    """One utterance's cache content: per-layer mean, std, valid-frame count and (optional) fp16 frames."""

    means: list[np.ndarray]  # float32 [D_l]
    stds: list[np.ndarray]  # float32 [D_l]
    num_frames: list[int]
    frames: list[np.ndarray] | None  # float16 [T_l, D_l], valid frames only


def _list_array(parts: list[np.ndarray], value_type: pa.DataType) -> pa.Array:
    """A list<value_type> array with one row per flattened numpy part."""
    sizes = np.fromiter((p.size for p in parts), dtype=np.int64, count=len(parts))
    offsets = np.zeros(len(parts) + 1, dtype=np.int32)
    np.cumsum(sizes, out=offsets[1:])
    flat = np.concatenate([p.reshape(-1) for p in parts]) if parts else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(flat.astype(value_type.to_pandas_dtype(), copy=False), value_type))


def _binary_array(parts: list[np.ndarray]) -> pa.Array:
    """A binary array with one row per numpy part holding its little-endian bytes (C order).

    Built from one concatenated buffer and its offsets: no per-value work, so a frames-tier row group
    encodes at memory speed (Parquet's list<float16> path handles every 2-byte value on its own).
    """
    sizes = np.fromiter((p.nbytes for p in parts), dtype=np.int64, count=len(parts))
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError(f"frames row group of {offsets[-1]:,} bytes exceeds a binary column's 2 GiB; lower row_group_mb")
    data = np.concatenate([np.ascontiguousarray(p).reshape(-1).view(np.uint8) for p in parts]) if parts else np.zeros(0, np.uint8)
    return pa.BinaryArray.from_buffers(pa.binary(), len(parts), [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)])


def crop_features(feats: UtteranceFeatures, crop: tuple[float, float], rates: Sequence[float | None]) -> UtteranceFeatures:
    """The frames of ``crop`` = (start_s, seconds): frame-level layers sliced at their own rate, utterance-level ones kept."""
    start_s, seconds = crop
    frames, counts = [], []
    for f, rate in zip(feats.frames or [], rates):
        if rate:
            first = min(int(start_s * float(rate)), max(0, f.shape[0] - 1))
            f = f[first : first + max(1, int(round(seconds * float(rate))))]
        frames.append(f)
        counts.append(int(f.shape[0]))
    return UtteranceFeatures(feats.means, feats.stds, counts, frames)


class TierWriter:
    """Append utterances to one tier's shard; ``finish`` publishes it atomically and returns its entry."""

    def __init__(self, tier: str, root: str, name: str, layer_names: list[str], compression: str, row_group_bytes: int, *,
                 select: Mapping[str, tuple[float, float] | None] | None = None, rates: Sequence[float | None] | None = None) -> None:
        """``select`` (frames tier only): write frames only for these ids, cropped to ``(start_s, seconds)`` where given,
        each frame-level layer at its own ``rates`` entry (frames per second); None writes every utterance whole."""
        if tier not in cf.TIERS:
            raise ValueError(f"unknown tier {tier!r}")
        if select is not None and tier == "frames" and rates is None and any(c is not None for c in select.values()):
            raise ValueError("cropped frames need the layers' frame rates")
        self.tier, self.root, self.name = tier, root, name
        self.select = select if tier == "frames" else None
        self.rates = list(rates) if rates is not None else None
        url = storage.join(root, name)
        self.layers = list(layer_names)
        self.schema = cf.pooled_schema(self.layers) if tier == "pooled" else cf.frames_schema(self.layers)
        self.tmp: Path = storage.local_temp_for(url, ".parquet")
        self.writer = pq.ParquetWriter(
            str(self.tmp), self.schema, compression=None if compression == "none" else compression,
            use_dictionary=["id", "speaker"], write_statistics=["id"],
        )
        self.row_group_bytes = int(row_group_bytes)
        self.rows = 0
        self._reset()

    def _reset(self) -> None:
        self.buf: dict[str, list[Any]] = {f.name: [] for f in self.schema}
        self.buf_bytes = 0

    def add(self, row: dict[str, Any], feats: UtteranceFeatures) -> None:
        """Buffer one utterance (``row`` has id, speaker, num_samples, labels, splits); frames outside ``select`` are skipped."""
        if self.select is not None:
            if row["id"] not in self.select:
                return
            crop = self.select[row["id"]]
            if crop is not None and feats.frames is not None:
                feats = crop_features(feats, crop, self.rates or [])
        b = self.buf
        b["id"].append(row["id"])
        b["speaker"].append(row["speaker"])
        if self.tier == "pooled":
            b["num_samples"].append(int(row["num_samples"]))
            b["labels"].append(sorted(row["labels"].items()))
            b["splits"].append(sorted(row["splits"].items()))
            for name, m, s in zip(self.layers, feats.means, feats.stds):
                b[cf.mean_column(name)].append(m)
                b[cf.std_column(name)].append(s)
                self.buf_bytes += 8 * m.size
        else:
            assert feats.frames is not None, "frames tier needs frames"
            for name, n, f in zip(self.layers, feats.num_frames, feats.frames):
                b[cf.num_frames_column(name)].append(n)
                b[cf.frames_column(name)].append(f.astype("<f2", copy=False))
                self.buf_bytes += 2 * f.size
        self.rows += 1
        if self.buf_bytes >= self.row_group_bytes:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one row group."""
        if not self.buf["id"]:
            return
        arrays = []
        for field in self.schema:
            values = self.buf[field.name]
            if pa.types.is_list(field.type):
                arrays.append(_list_array(values, field.type.value_type))
            elif pa.types.is_binary(field.type):
                arrays.append(_binary_array(values))
            else:
                arrays.append(pa.array(values, field.type))
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self._reset()

    def finish(self) -> artifacts.FileEntry:
        """Close, checksum and publish the shard; returns its manifest entry."""
        self.flush()
        self.writer.close()
        return artifacts.publish_local(self.tmp, self.root, self.name, rows=self.rows)

    def abort(self) -> None:
        """Drop the unpublished file (nothing partial becomes visible)."""
        try:
            self.writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)

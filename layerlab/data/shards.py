"""Audio shards: Parquet files of FLAC utterances, written rolling by size, read as a stream.

One row per utterance (see ``SHARD_SCHEMA``). The writer normalises audio (16 kHz mono),
quarantines bad input with its reason, rolls to a new shard when the current one reaches
``max_shard_bytes``, publishes every file atomically and writes ``manifest.json`` last. The reader
streams row groups shard by shard, so memory stays bounded whatever the corpus size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from layerlab import artifacts, storage
from layerlab.artifacts import QUARANTINE_SCHEMA
from layerlab.lease import KEEP
from layerlab.data.alignment import rescale_spans
from layerlab.data.audio import AudioLimits, BadAudio, decode_flac, encode_flac, normalise
from layerlab.data.manifest import MANIFEST_NAME, QUARANTINE_NAME, AudioManifest, FileEntry, read_manifest, write_manifest
from layerlab.data.records import AudioRecord, PhoneSpan
from layerlab.data.tasks import MAX_OBSERVED_CLASSES, TaskSpec, observed_tasks, tasks_from_extra

log = logging.getLogger(__name__)

PHONE_SPAN = pa.struct([("phone", pa.string()), ("start", pa.int64()), ("end", pa.int64())])

SHARD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("audio", pa.binary()),  # FLAC, 16-bit, mono
        ("sample_rate", pa.int32()),
        ("num_samples", pa.int64()),
        ("speaker", pa.string()),
        ("source", pa.string()),  # where the utterance came from (file path, generator tag)
        ("orig_sample_rate", pa.int32()),  # before resampling
        ("orig_channels", pa.int16()),  # before downmixing
        ("gain", pa.float32()),  # scale applied to avoid clipping (1.0 = none)
        ("labels", pa.map_(pa.string(), pa.string())),  # task -> label
        ("splits", pa.map_(pa.string(), pa.string())),  # task -> train/dev/test
        ("transcript", pa.string()),
        ("alignment", pa.list_(PHONE_SPAN)),  # phone spans in samples at sample_rate
    ]
)



@dataclass
class Utterance:
    """A decoded shard row."""

    id: str
    wav: np.ndarray
    sample_rate: int
    speaker: str
    source: str
    labels: dict[str, str]
    splits: dict[str, str]
    transcript: str | None
    alignment: list[PhoneSpan] | None


@dataclass
class BuildSummary:
    """What a build produced; printed at the end of every build."""

    root: str
    kept: int
    quarantined: int
    shards: int
    audio_seconds: float
    shard_bytes: list[int]
    reasons: dict[str, int] = field(default_factory=dict)

    def render(self) -> str:
        lines = [
            f"dataset: {self.root}",
            f"kept: {self.kept} utterances, {self.audio_seconds / 3600:.3f} h of audio in {self.shards} shard(s)",
        ]
        if self.shard_bytes:
            mb = np.array(self.shard_bytes) / 1e6
            lines.append(f"shard sizes: min {mb.min():.2f} MB, mean {mb.mean():.2f} MB, max {mb.max():.2f} MB")
        lines.append(f"quarantined: {self.quarantined}")
        for reason, n in sorted(self.reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {n:6d}  {reason}")
        return "\n".join(lines)


def _reason_kind(reason: str) -> str:
    """The reason's category (text before the first colon) for summary counts."""
    return reason.split(":", 1)[0]


class ShardWriter:
    """Write utterances to rolling Parquet shards under ``root`` with quarantine and manifest.

    Use as a context manager; the manifest is written only by a successful ``close()``, so an
    interrupted build never looks complete. Rows are appended in call order (deterministic output
    for a deterministic input order).
    """

    def __init__(
        self,
        root: str,
        dataset: str,
        *,
        max_shard_bytes: int = 128 * 1024 * 1024,
        row_group_rows: int = 64,
        limits: AudioLimits = AudioLimits(),
        extra: dict[str, Any] | None = None,
        tasks: dict[str, TaskSpec] | None = None,
    ) -> None:
        self.root = str(root).rstrip("/")
        self.dataset = dataset
        self.max_shard_bytes = int(max_shard_bytes)
        self.row_group_rows = int(row_group_rows)
        self.limits = limits
        self.extra: dict[str, Any] = dict(extra or {})
        self._seen: dict[str, str] = {}
        self._rows: list[dict[str, Any]] = []
        self._pending_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self._shard_rows = 0
        self._shard_seconds = 0.0
        self._shards: list[FileEntry] = []
        self._quarantine: list[dict[str, str]] = []
        self._tables: dict[str, FileEntry] = {}
        self._closed = False
        self.manifest: AudioManifest | None = None
        self.tasks = tasks  # None: derived at close from ``extra`` (synth, known importers) or the rows seen
        self._label_values: dict[str, set[str]] = {}
        self._split_values: dict[str, set[str]] = {}
        self._has_transcript = False

    # -- input -----------------------------------------------------------------------------
    def add(self, record: AudioRecord) -> bool:
        """Normalise and append one utterance; returns False if it was quarantined."""
        if not record.id:
            self.quarantine("", record.source, "missing id")
            return False
        if record.id in self._seen:
            self.quarantine(record.id, record.source, f"duplicate id: first seen in {self._seen[record.id]}")
            return False
        try:
            norm = normalise(record.audio, record.sample_rate, self.limits)
        except BadAudio as exc:
            self.quarantine(record.id, record.source, str(exc))
            return False
        self._seen[record.id] = record.source
        alignment = None
        if record.alignment is not None:
            try:
                spans = rescale_spans(record.alignment, norm.orig_num_samples, int(norm.wav.shape[0]))
            except ValueError as exc:
                self.quarantine(record.id, record.source, f"bad alignment: {exc}")
                del self._seen[record.id]
                return False
            alignment = [{"phone": p.phone, "start": p.start, "end": p.end} for p in spans]
        self._rows.append(
            {
                "id": record.id,
                "audio": encode_flac(norm.wav, norm.sample_rate),
                "sample_rate": norm.sample_rate,
                "num_samples": int(norm.wav.shape[0]),
                "speaker": record.speaker,
                "source": record.source,
                "orig_sample_rate": norm.orig_sample_rate,
                "orig_channels": norm.orig_channels,
                "gain": norm.gain,
                "labels": sorted(record.labels.items()),
                "splits": sorted(record.splits.items()),
                "transcript": record.transcript,
                "alignment": alignment,
            }
        )
        self._observe(record)
        self._shard_seconds += norm.wav.shape[0] / norm.sample_rate
        self._pending_bytes += len(self._rows[-1]["audio"])
        # Row groups end at row_group_rows or at a quarter of a shard, whichever comes first, so
        # shards roll close to max_shard_bytes and the writer's buffer stays bounded.
        if len(self._rows) >= self.row_group_rows or self._pending_bytes >= self.max_shard_bytes // 4:
            self._flush_row_group()
        elif self._tmp is not None and self._tmp.stat().st_size + self._pending_bytes >= self.max_shard_bytes:
            self._flush_row_group()
            self._finish_shard()
        return True

    def _observe(self, record: AudioRecord) -> None:
        """Remember label keys/values and split keys seen, for datasets without a declared task list."""
        for key, value in record.labels.items():
            seen = self._label_values.setdefault(key, set())
            if len(seen) <= MAX_OBSERVED_CLASSES:
                seen.add(str(value))
        for key, value in record.splits.items():
            self._split_values.setdefault(key, set()).add(str(value))
        self._has_transcript = self._has_transcript or bool(record.transcript)

    def declared_tasks(self) -> dict[str, TaskSpec]:
        """The tasks recorded in the manifest: given, derived from ``extra``, or observed in the rows."""
        if self.tasks is not None:
            return dict(self.tasks)
        return tasks_from_extra(self.extra) or observed_tasks(self._label_values, self._split_values, self._has_transcript)

    def add_file(self, url: str, id: str, speaker: str, source: str | None = None, **fields: Any) -> bool:
        """Read an audio file from any URL and ``add`` it; an unreadable file is quarantined."""
        src = source or url
        try:
            data = storage.read_bytes(url)
        except OSError as exc:
            self.quarantine(id, src, f"unreadable file: {exc.strerror or exc}")
            return False
        return self.add(AudioRecord(id=id, audio=data, speaker=speaker, source=src, **fields))

    def quarantine(self, id: str, source: str, reason: str, stage: str = "ingest") -> None:
        """Record an input that could not be used (unreadable file, bad audio, duplicate id...)."""
        log.warning("quarantined %s (%s): %s", id or "<no id>", source, reason)
        self._quarantine.append({"id": id, "source": source, "reason": reason, "stage": stage})

    def add_table(self, name: str, table: pa.Table) -> None:
        """Publish a side table (e.g. an ASV trial list) as ``tables/<name>.parquet``."""
        rel = f"tables/{name}.parquet"
        self._tables[name] = self._publish_table(rel, table)

    # -- shards ----------------------------------------------------------------------------
    def _shard_name(self) -> str:
        return f"shards/shard-{len(self._shards):05d}.parquet"

    def _flush_row_group(self) -> None:
        if not self._rows:
            return
        if self._writer is None:
            self._tmp = storage.local_temp_for(storage.join(self.root, self._shard_name()), ".parquet")
            self._writer = pq.ParquetWriter(str(self._tmp), SHARD_SCHEMA, compression="zstd", write_statistics=["id"])
        table = pa.Table.from_pylist(self._rows, schema=SHARD_SCHEMA)
        self._writer.write_table(table, row_group_size=len(self._rows))
        self._shard_rows += len(self._rows)
        self._rows = []
        self._pending_bytes = 0
        if self._tmp is not None and self._tmp.stat().st_size >= self.max_shard_bytes:
            self._finish_shard()

    def _finish_shard(self) -> None:
        if self._writer is None or self._tmp is None:
            return
        self._writer.close()
        name = self._shard_name()
        entry = artifacts.publish_local(self._tmp, self.root, name, rows=self._shard_rows, audio_seconds=round(self._shard_seconds, 6))
        self._shards.append(entry)
        self._writer, self._tmp = None, None
        self._shard_rows, self._shard_seconds = 0, 0.0

    def _publish_table(self, rel: str, table: pa.Table) -> FileEntry:
        return artifacts.publish_table(self.root, rel, table)

    # -- finish ----------------------------------------------------------------------------
    def close(self) -> AudioManifest:
        """Flush, publish the quarantine table and the manifest; remove stale shards of old builds."""
        if self._closed:
            assert self.manifest is not None
            return self.manifest
        self._flush_row_group()
        self._finish_shard()
        qtable = pa.Table.from_pylist(self._quarantine, schema=QUARANTINE_SCHEMA)
        qentry = self._publish_table(QUARANTINE_NAME, qtable)
        self.manifest = AudioManifest(
            dataset=self.dataset,
            shards=self._shards,
            kept=sum(s.rows for s in self._shards),
            quarantined=len(self._quarantine),
            audio_seconds=round(sum(s.audio_seconds for s in self._shards), 6),
            quarantine=qentry,
            tables=self._tables,
            extra=self.extra,
            tasks=self.declared_tasks(),
        )
        self._remove_stale_shards()
        write_manifest(self.root, self.manifest)
        self._closed = True
        return self.manifest

    def _remove_stale_shards(self) -> None:
        keep = {s.name.rsplit("/", 1)[-1] for s in self._shards}
        for url in storage.list_files(storage.join(self.root, "shards"), ".parquet"):
            if url.rsplit("/", 1)[-1] not in keep:
                storage.remove(url, within=self.root)

    def abort(self) -> None:
        """Drop the unpublished shard in progress (nothing partial becomes visible)."""
        if self._writer is not None:
            self._writer.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        self._writer, self._tmp = None, None

    def summary(self) -> BuildSummary:
        """Counts for the final report (call after ``close``)."""
        m = self.manifest or self.close()
        reasons: dict[str, int] = {}
        for q in self._quarantine:
            k = _reason_kind(q["reason"])
            reasons[k] = reasons.get(k, 0) + 1
        return BuildSummary(self.root, m.kept, m.quarantined, len(m.shards), m.audio_seconds, [s.bytes for s in m.shards], reasons)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# -- output guard ------------------------------------------------------------------------------

def prepare_output(root: str, build: dict[str, Any], overwrite: bool = False) -> bool:
    """Guard a build's ``--out``: True when the same build already finished there (reuse it).

    A folder holding another dataset (different generator/importer, source or settings), or anything
    else that is not an unfinished build of ours, is refused unless ``overwrite`` (then it is emptied).
    ``build`` identifies the build (recorded as ``extra["build"]`` in the manifest).
    """
    root = storage.canonical_url(root)
    fs, path = storage.url_to_fs(root)
    manifest_url = storage.join(root, MANIFEST_NAME)
    if storage.exists(manifest_url):
        m = read_manifest(root)
        if m.extra.get("build") == build and not overwrite:
            return True
        if not overwrite:
            raise FileExistsError(f"{root}: already holds another dataset ({m.dataset!r}, {m.kept} utterances, built by "
                                  f"{m.extra.get('build', {}).get('by') or m.extra.get('importer') or m.extra.get('generator', 'unknown')}); "
                                  "use another --out, or --overwrite to replace it")
        storage.remove(root, recursive=True, within=root, keep=KEEP)
        return False
    if storage.exists(root):
        if not fs.isdir(path):
            raise NotADirectoryError(f"{root}: output must be a folder, but a file is there")
        foreign = [p for p in fs.ls(path, detail=False) if Path(str(p)).name not in ("shards", "tables", QUARANTINE_NAME) and not Path(str(p)).name.startswith(".")]
        if foreign and not overwrite:
            raise FileExistsError(f"{root}: folder is not empty and holds no dataset (e.g. {Path(str(foreign[0])).name}); "
                                  "use another --out, or --overwrite to replace its contents")
        if foreign:
            storage.remove(root, recursive=True, within=root, keep=KEEP)
    return False


def existing_summary(root: str) -> BuildSummary:
    """The summary of a finished dataset (a rerun that reuses it)."""
    m = read_manifest(root)
    return BuildSummary(storage.canonical_url(root), m.kept, m.quarantined, len(m.shards), m.audio_seconds, [s.bytes for s in m.shards], {"reused: already built": 1})


# -- reading -----------------------------------------------------------------------------------

def shard_urls(root: str, manifest: AudioManifest | None = None) -> list[str]:
    """URLs of the dataset's shards in manifest order."""
    m = manifest or read_manifest(root)
    return [storage.join(root, s.name) for s in m.shards]


def iter_batches(
    root: str,
    columns: Sequence[str] | None = None,
    batch_rows: int = 64,
    shards: Sequence[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream record batches over all shards (or the given shard URLs), one row group at a time."""
    for url in shards if shards is not None else shard_urls(root):
        yield from iter_shard_batches(url, columns=columns, batch_rows=batch_rows)


def iter_shard_batches(url: str, columns: Sequence[str] | None = None, batch_rows: int = 64) -> Iterator[pa.RecordBatch]:
    """Stream one shard's record batches with bounded memory (no whole-file reads)."""
    with storage.open_input(url) as f:
        try:
            pf = pq.ParquetFile(f)
        except Exception as exc:
            raise ValueError(f"{url}: not a readable Parquet shard ({exc})") from exc
        yield from pf.iter_batches(batch_size=batch_rows, columns=list(columns) if columns else None)


def rows_to_utterances(batch: pa.RecordBatch) -> Iterator[Utterance]:
    """Decode the rows of a record batch (all shard columns) into ``Utterance`` objects."""
    for row in batch.to_pylist():
        yield _to_utterance(row)


def _to_utterance(row: dict[str, Any]) -> Utterance:
    align = row.get("alignment")
    return Utterance(
        id=row["id"],
        wav=decode_flac(row["audio"]),
        sample_rate=row["sample_rate"],
        speaker=row["speaker"],
        source=row.get("source") or "",
        labels=dict(row.get("labels") or []),
        splits=dict(row.get("splits") or []),
        transcript=row.get("transcript"),
        alignment=[PhoneSpan(a["phone"], a["start"], a["end"]) for a in align] if align is not None else None,
    )


def iter_utterances(root: str, batch_rows: int = 16) -> Iterator[Utterance]:
    """Stream every utterance of a dataset, decoded."""
    for batch in iter_batches(root, batch_rows=batch_rows):
        yield from rows_to_utterances(batch)


def read_metadata(root: str, columns: Sequence[str] = ("id", "speaker", "num_samples", "labels", "splits", "transcript")) -> pa.Table:
    """All rows of the dataset without the audio column (small: labels and lengths only)."""
    batches = list(iter_batches(root, columns=columns, batch_rows=4096))
    if not batches:
        return pa.Table.from_pylist([], schema=pa.schema([SHARD_SCHEMA.field(c) for c in columns]))
    return pa.Table.from_batches(batches)


def read_quarantine(root: str, verify: bool = True) -> pa.Table:
    """The dataset's quarantine table: id, source, reason, stage (checked against the manifest).

    Read from memory (a pyarrow buffer, not a Python file object): pyarrow's reader threads calling
    back into a Python file object, and pyarrow's decoding thread pool left running at interpreter
    exit, made ``corpus info`` abort ("terminate called without an active exception", exit 134) in
    some runs; small tables are decoded on the calling thread.
    """
    m = read_manifest(root)
    if m.quarantine is None:
        return QUARANTINE_SCHEMA.empty_table()
    with artifacts.open_verified(root, m.quarantine, verify) as f:
        return pq.read_table(f, use_threads=False)


def read_table(root: str, name: str) -> pa.Table:
    """A side table published with ``ShardWriter.add_table`` (e.g. ``asv_trials``)."""
    m = read_manifest(root)
    if name not in m.tables:
        raise KeyError(f"{root}: no table {name!r}; available: {sorted(m.tables)}")
    with artifacts.open_verified(root, m.tables[name]) as f:
        return pq.read_table(f, use_threads=False)


def verify(root: str) -> list[str]:
    """Check every file's size and SHA-256 against the manifest; returns the problems (empty when intact)."""
    m = read_manifest(root)
    return artifacts.verify_entries(root, list(m.shards) + list(m.tables.values()) + ([m.quarantine] if m.quarantine else []))

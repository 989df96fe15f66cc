"""The one reader of activation caches: metadata, layers, tasks, pooled tier in one pass, frames streamed.

Only files listed in ``manifest.json`` are read, each checked against its size and SHA-256 as it is
read (``verify=False`` skips that for huge trusted runs). A cache whose extraction has not finished
is refused unless ``allow_partial``; ids are checked to be unique across shards; labels, splits,
transcripts and alignments are joined from the source audio dataset by id (``source_rows``).
Nothing here imports Ray or torch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import IO, Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import ValidationError

from layerlab import artifacts, storage
from layerlab.artifacts import FileEntry, IntegrityError
from layerlab.cache import format as cf
from layerlab.cache.layers import LayerMeta, convention_for_spec
from layerlab.data.tasks import TaskSpec


#: keys a per-shard CKA side-output state carries besides the accumulator's own (ignored when rebuilding it)
STATE_SHARD_KEY = "source_shard"
STATE_IDS_KEY = "utterance_ids"


class CacheError(ValueError):
    """A cache cannot be used as asked (incomplete, duplicate ids, unknown layer or tier); names the URL."""


class CacheNotFound(FileNotFoundError):
    """No activation cache at the URL."""


class IncompleteCache(CacheError):
    """The extraction of this cache has not finished (use ``allow_partial`` to read the finished shards)."""


class IdLedger:
    """Utterance ids seen so far, by shard: a second sighting is an IntegrityError naming the cache and both shards.

    Checksums do not stand in for this (``--no-verify`` skips them, and a merge of per-shard states never
    sees the rows): every reader and every merge of per-shard results feeds the ids it used through one ledger.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: dict[str, str] = {}

    def add(self, ids: Sequence[str], shard: str) -> None:
        """Record ``ids`` as read from ``shard``; raise (recording none of them) on an id already recorded, here or in another shard."""
        batch: dict[str, str] = {}
        for uid in map(str, ids):
            first = self.seen.get(uid) or batch.get(uid)
            if first is not None:
                where = f"shards {first} and {shard}" if first != shard else f"shard {shard}"
                raise IntegrityError(f"{self.url}: utterance id {uid!r} appears twice ({where}); the cache is corrupted "
                                     "(a shard replaced by another?): re-extract, or run `layerlab cache verify`")
            batch[uid] = shard
        self.seen.update(batch)

    def __len__(self) -> int:
        return len(self.seen)


@dataclass
class Pooled:
    """The pooled tier of the chosen layers: one row per utterance, in cache shard order."""

    ids: list[str]
    speakers: list[str]
    num_samples: np.ndarray
    mean: dict[str, np.ndarray] = field(default_factory=dict)
    std: dict[str, np.ndarray] = field(default_factory=dict)
    shards: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class FramesRow:
    """One utterance of the frames tier: speaker and fp16 ``[T_l, D_l]`` valid frames per requested layer."""

    id: str
    speaker: str
    frames: dict[str, np.ndarray]
    shard: str = ""


def read_metadata(url: str) -> cf.CacheMetadata:
    """``metadata.json`` of the cache at ``url``; errors name the file and the reason."""
    doc_url = storage.join(url, cf.METADATA_NAME)
    if not storage.exists(doc_url):
        raise CacheNotFound(f"{url}: not an activation cache (no {cf.METADATA_NAME}); create one with `layerlab extract`")
    try:
        meta = cf.CacheMetadata.model_validate(storage.read_json(doc_url))
    except ValidationError as exc:
        raise CacheError(f"{doc_url}: not valid activation-cache metadata: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}") from exc
    if not len(meta.layer_names) == len(meta.dims) == len(meta.frame_rates_hz):
        raise CacheError(f"{doc_url}: layer_names, dims and frame_rates_hz have different lengths")
    return meta


def read_cache_manifest(url: str) -> cf.CacheManifest:
    """``manifest.json`` of the cache (an empty manifest if no shard completed yet)."""
    doc_url = storage.join(url, cf.MANIFEST_NAME)
    if not storage.exists(doc_url):
        return cf.CacheManifest()
    try:
        return cf.CacheManifest.model_validate(storage.read_json(doc_url))
    except ValidationError as exc:
        raise CacheError(f"{doc_url}: not a valid cache manifest: {exc.errors()[0]['msg']}") from exc


def layer_metas(meta: cf.CacheMetadata) -> list[LayerMeta]:
    """Every layer's geometry: as recorded, or derived from the frame rate and model family (older caches)."""
    recorded = {r.name: r for r in meta.layers}
    default_conv, default_window = convention_for_spec(meta.model_spec)
    out = []
    for name, dim, rate in zip(meta.layer_names, meta.dims, meta.frame_rates_hz):
        rec = recorded.get(name)
        if rate is None:
            out.append(LayerMeta(name, int(dim), None, None, "utterance"))
        elif rec is not None:
            out.append(LayerMeta(name, int(dim), float(rate), rec.hop_samples, rec.frame_convention, rec.window_samples))
        else:
            out.append(LayerMeta(name, int(dim), float(rate), int(round(meta.sample_rate / float(rate))), default_conv, default_window))
    return out


def select_layers(available: Sequence[str], spec: str | Sequence[str] | None) -> list[str]:
    """Layer names from a selection: None (all), a list, or text with names and ranges (``hidden_0..hidden_4``, ``0-4``, ``lstm1,embedding``)."""
    names = list(available)
    if spec is None:
        return names
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if str(s).strip()]
    if not items:
        raise ValueError("layers: empty selection")
    out: list[str] = []

    def position(token: str) -> int:
        if token in names:
            return names.index(token)
        if token.isdigit() and int(token) < len(names):
            return int(token)
        raise ValueError(f"layers: no layer {token!r}; layers are {', '.join(names)}")

    for item in items:
        if item in names:
            out.append(item)
            continue
        sep = ".." if ".." in item else ("-" if item.count("-") == 1 and all(p.isdigit() for p in item.split("-")) else None)
        if sep:
            lo, hi = (position(p.strip()) for p in item.split(sep, 1))
            if hi < lo:
                raise ValueError(f"layers: empty range {item!r}")
            out.extend(names[lo : hi + 1])
        else:
            out.append(names[position(item)])
    return list(dict.fromkeys(out))


class CacheReader:
    """An opened activation cache (see the module docstring). Create with :func:`open_cache`."""

    def __init__(self, url: str, metadata: cf.CacheMetadata, manifest: cf.CacheManifest, *, verify: bool = True,
                 allow_partial: bool = False, source_url: str | None = None) -> None:
        self.url = url
        self.metadata = metadata
        self.manifest = manifest
        self.verify = verify
        self.allow_partial = allow_partial
        self.source_url = source_url or metadata.source.url
        self._layers = layer_metas(metadata)
        self._tasks: dict[str, TaskSpec] | None = None
        self._frames_speakers: bool | None = None

    # ------------------------------------------------------------------ description
    @property
    def layers(self) -> list[LayerMeta]:
        """Every layer of the cache, in model order."""
        return list(self._layers)

    def layer(self, name: str) -> LayerMeta:
        """One layer's geometry; CacheError naming the cache and listing its layers otherwise."""
        for meta in self._layers:
            if meta.name == name:
                return meta
        raise CacheError(f"{self.url}: no layer {name!r}; layers: {', '.join(self.metadata.layer_names)}")

    def layer_names(self, spec: str | Sequence[str] | None = None) -> list[str]:
        """Names selected by ``spec`` (see :func:`select_layers`); errors name the cache."""
        try:
            return select_layers(self.metadata.layer_names, spec)
        except ValueError as exc:
            raise CacheError(f"{self.url}: {exc}") from exc

    @property
    def tasks(self) -> dict[str, TaskSpec]:
        """The source dataset's tasks: copied at extraction, or read from the source manifest (older caches)."""
        if self._tasks is None:
            self._tasks = dict(self.metadata.tasks)
            if not self._tasks:
                try:
                    from layerlab.data.manifest import read_manifest

                    self._tasks = dict(read_manifest(self.source_url).tasks)
                except (OSError, ValueError):
                    self._tasks = {}
        return self._tasks

    @property
    def complete(self) -> bool:
        """Every source shard was extracted and the run finalised."""
        return bool(self.manifest.complete)

    def shard_names(self) -> list[str]:
        """Source shard names of the completed cache shards, sorted."""
        return sorted(self.manifest.shards)

    def frames_selection(self) -> Any:
        """The utterances the frames tier holds (:class:`layerlab.data.selection.FramesSelection`), or None when it holds all.

        Checked against the digest in ``metadata.json``: a replaced selection file is an IntegrityError.
        """
        record = self.metadata.frames_selection
        if record is None:
            return None
        from layerlab.data.selection import FramesSelection

        url = storage.join(self.url, cf.FRAMES_SELECTION_NAME)
        try:
            sel = FramesSelection.from_json(storage.read_json(url))
        except FileNotFoundError as exc:
            raise CacheError(f"{url}: missing (metadata.json records a frames selection of {record.get('utterances')} utterances)") from exc
        if sel.digest() != record.get("sha256"):
            raise IntegrityError(f"{url}: does not match the selection recorded in metadata.json (SHA-256 differs)")
        return sel

    def usage(self) -> dict[str, Any]:
        """What a result computed from this cache used: shards and utterances (recorded in summaries)."""
        return {"cache": self.url, "complete": self.complete, "n_shards": len(self.manifest.shards),
                "n_shards_source": self.metadata.source.shards, "n_utterances": self.manifest.kept}

    # ------------------------------------------------------------------ files
    def tier_entries(self, tier: str) -> list[tuple[str, FileEntry]]:
        """(source shard name, file entry) of ``tier`` for every completed shard, in shard order."""
        if tier not in self.metadata.tiers:
            raise CacheError(f"{self.url}: tier {tier!r} was not extracted (tiers: {', '.join(self.metadata.tiers)})")
        out = []
        for name in self.shard_names():
            rec = self.manifest.shards[name]
            if tier not in rec.files:
                raise CacheError(f"{storage.join(self.url, cf.MANIFEST_NAME)}: shard {name} has no {tier} file")
            out.append((name, rec.files[tier]))
        if not out:
            raise CacheError(f"{storage.join(self.url, cf.MANIFEST_NAME)}: no completed shards yet (is the extraction still running?)")
        return out

    def open_file(self, entry: FileEntry) -> IO[bytes]:
        """A listed file, size- and checksum-verified unless the reader was opened with ``verify=False``."""
        return artifacts.open_verified(self.url, entry, self.verify)

    def _parquet(self, entry: FileEntry, f: IO[bytes]) -> pq.ParquetFile:
        try:
            return pq.ParquetFile(f)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            raise IntegrityError(f"{storage.join(self.url, entry.name)}: not a readable Parquet file ({exc})") from exc

    # ------------------------------------------------------------------ pooled tier
    def read_pooled(self, layers: str | Sequence[str] | None = None, stats: Sequence[str] = ("mean",)) -> Pooled:
        """All requested layers' per-utterance ``stats`` (mean, std) as ``[N, D]`` float32, in ONE pass over the shards."""
        names = self.layer_names(layers)
        bad = [s for s in stats if s not in ("mean", "std")]
        if bad:
            raise ValueError(f"stats: must be mean and/or std, got {bad}")
        cols = {(s, n): (cf.mean_column(n) if s == "mean" else cf.std_column(n)) for s in stats for n in names}
        parts: dict[tuple[str, str], list[np.ndarray]] = {k: [] for k in cols}
        ids: list[str] = []
        speakers: list[str] = []
        samples: list[np.ndarray] = []
        ledger = IdLedger(self.url)
        shards = []
        for shard, entry in self.tier_entries("pooled"):
            shards.append(shard)
            with self.open_file(entry) as f:
                pf = self._parquet(entry, f)
                for batch in pf.iter_batches(batch_size=4096, columns=["id", "speaker", "num_samples", *cols.values()]):
                    batch_ids = [str(i) for i in batch.column("id").to_pylist()]
                    ledger.add(batch_ids, shard)
                    ids.extend(batch_ids)
                    speakers.extend(str(s or "") for s in batch.column("speaker").to_pylist())
                    samples.append(batch.column("num_samples").to_numpy(zero_copy_only=False).astype(np.int64))
                    for key, col in cols.items():
                        parts[key].append(_list_matrix(batch.column(col), self.layer(key[1]).dim, storage.join(self.url, entry.name), key[1]))
        out = Pooled(ids=ids, speakers=speakers, num_samples=np.concatenate(samples) if samples else np.zeros(0, np.int64), shards=shards)
        for (stat, name), p in parts.items():
            mat = np.concatenate(p) if p else np.zeros((0, self.layer(name).dim), np.float32)
            getattr(out, stat)[name] = mat.astype(np.float32, copy=False)
        return out

    def iter_shard_pooled(self, shard: str, layers: str | Sequence[str] | None = None, batch_rows: int = 1024) -> Iterator[tuple[str, str, list[np.ndarray]]]:
        """Stream one pooled shard as (id, speaker, [mean vector per requested layer])."""
        names = self.layer_names(layers)
        entry = dict(self.tier_entries("pooled"))[shard]
        url = storage.join(self.url, entry.name)
        with self.open_file(entry) as f:
            pf = self._parquet(entry, f)
            cols = [cf.mean_column(n) for n in names]
            missing = [c for c in cols if c not in pf.schema_arrow.names]
            if missing:
                raise CacheError(f"{url}: missing columns {missing[:3]} of the pooled tier")
            for batch in pf.iter_batches(batch_size=batch_rows, columns=["id", "speaker", *cols]):
                mats = [_list_matrix(batch.column(c), self.layer(n).dim, url, n).astype(np.float32, copy=False) for c, n in zip(cols, names)]
                speakers = batch.column("speaker").to_pylist()
                for i, uid in enumerate(batch.column("id").to_pylist()):
                    yield str(uid), str(speakers[i] or ""), [m[i] for m in mats]

    def frames_have_speakers(self) -> bool:
        """Whether the frames tier stores speakers (caches written before the column existed do not)."""
        if self._frames_speakers is None:
            entries = self.tier_entries("frames")
            with storage.open_input(storage.join(self.url, entries[0][1].name)) as f:
                self._frames_speakers = "speaker" in pq.ParquetFile(f).schema_arrow.names
        return self._frames_speakers

    # ------------------------------------------------------------------ frames tier
    def iter_shard_frames(self, shard: str, layers: str | Sequence[str] | None = None, batch_rows: int = 16) -> Iterator[FramesRow]:
        """Stream one shard's frames-tier utterances (only the requested layers' columns are read)."""
        names = self.layer_names(layers)
        entry = dict(self.tier_entries("frames"))[shard]
        url = storage.join(self.url, entry.name)
        with self.open_file(entry) as f:
            pf = self._parquet(entry, f)
            present = set(pf.schema_arrow.names)
            wanted = [c for n in names for c in (cf.frames_column(n), cf.num_frames_column(n))]
            missing = [c for c in wanted if c not in present]
            if missing:
                raise CacheError(f"{url}: missing columns {missing[:3]} of the frames tier")
            extra = ["speaker"] if "speaker" in present else []  # caches written before the column existed
            for batch in pf.iter_batches(batch_size=batch_rows, columns=["id", *extra, *wanted]):
                yield from self._frames_rows(batch, names, url, shard)

    def _frames_rows(self, batch: pa.RecordBatch, names: list[str], url: str, shard: str) -> Iterator[FramesRow]:
        ids = [str(i) for i in batch.column("id").to_pylist()]
        speakers = [str(s or "") for s in batch.column("speaker").to_pylist()] if "speaker" in batch.schema.names else [""] * len(ids)
        per_layer: dict[str, list[np.ndarray]] = {}
        for n in names:
            dim = self.layer(n).dim
            flat, sizes = _frames_values(batch.column(cf.frames_column(n)))
            counts = batch.column(cf.num_frames_column(n)).to_numpy(zero_copy_only=False).astype(np.int64)
            bad = np.flatnonzero(sizes != counts * dim)
            if bad.size:
                i = int(bad[0])
                raise IntegrityError(f"{url}: utterance {ids[i]} layer {n} has {sizes[i]} values, expected {counts[i]} frames x dim {dim}")
            per_layer[n] = _split_rows(flat, sizes, dim)
        for i, uid in enumerate(ids):
            yield FramesRow(id=uid, speaker=speakers[i], frames={n: per_layer[n][i] for n in names}, shard=shard)

    def iter_frames(self, layers: str | Sequence[str] | None = None, *, shuffle_buffer: int = 0, seed: int = 0,
                    batch_rows: int = 16) -> Iterator[FramesRow]:
        """Stream every utterance's frames; ``shuffle_buffer > 0`` shuffles shard order and utterances through a bounded buffer."""
        rng = random.Random(seed)
        shards = self.shard_names() if self.tier_entries("frames") else []
        if shuffle_buffer > 0:
            rng.shuffle(shards)
        ledger = IdLedger(self.url)

        def rows() -> Iterator[FramesRow]:
            for shard in shards:
                for row in self.iter_shard_frames(shard, layers, batch_rows):
                    ledger.add([row.id], shard)
                    yield row

        if shuffle_buffer <= 0:
            yield from rows()
            return
        buffer: list[FramesRow] = []
        for row in rows():
            if len(buffer) < shuffle_buffer:
                buffer.append(row)
                continue
            k = rng.randrange(len(buffer))
            buffer[k], row = row, buffer[k]
            yield row
        rng.shuffle(buffer)
        yield from buffer

    # ------------------------------------------------------------------ source join, tables, CKA states
    def source_rows(self, ids: Sequence[str] | None = None) -> "Any":
        """pandas DataFrame indexed by id: speaker, num_samples, labels, splits, transcript, alignment (from the source dataset)."""
        from layerlab.data.manifest import read_manifest

        try:
            source = read_manifest(self.source_url)
        except (FileNotFoundError, ValueError) as exc:
            raise CacheError(f"{self.url}: cannot join labels from the source dataset {self.source_url} ({exc})") from exc
        if source.checksum() != self.metadata.source.manifest_checksum:
            raise CacheError(f"{self.url}: the source dataset at {self.source_url} changed since extraction (manifest checksum differs)")
        from layerlab.data.rows import read_rows

        only = None if ids is not None else set(self.manifest.shards)  # only the shards this cache holds
        df = read_rows(self.source_url, source, shards=only, ids=ids, verify=self.verify)
        if ids is not None:
            missing = [i for i in ids if i not in df.index]
            if missing:
                raise CacheError(f"{self.url}: {len(missing)} ids not in the source dataset {self.source_url}, e.g. {missing[0]!r}")
            df = df.loc[list(ids)]
        return df

    def table(self, name: str) -> pa.Table:
        """A side table of the source dataset (e.g. ``asv_trials``), verified."""
        from layerlab.data.manifest import read_manifest

        source = read_manifest(self.source_url)
        if name not in source.tables:
            raise CacheError(f"{self.source_url}: no table {name!r} (tables: {', '.join(sorted(source.tables)) or 'none'})")
        with artifacts.open_verified(self.source_url, source.tables[name], self.verify) as f:
            return pq.read_table(f, use_threads=False)

    def quarantine(self) -> pa.Table:
        """The cache's quarantine table (id, source, reason, stage); from the shard records until the run completes."""
        if self.manifest.quarantine is None:
            return artifacts.quarantine_table(q for rec in self.manifest.shards.values() for q in rec.quarantined)
        with self.open_file(self.manifest.quarantine) as f:
            return pq.read_table(f, use_threads=False)

    def cka_states(self, name: str) -> dict[str, dict[str, Any]]:
        """Per-shard CKA partial states of the extraction side-output ``name``, keyed by source shard.

        Checked without checksums too: each state names the shard it was computed from and the utterance
        ids it holds (a state copied over another shard's, or ids in two shards, is an IntegrityError).
        States written before they carried ids are checked through the tier files' id column instead.
        """
        from layerlab.accumulator import state_from_bytes

        out = {}
        ledger = IdLedger(self.url)
        untagged = False
        for shard in self.shard_names():
            rec = self.manifest.shards[shard]
            if name not in rec.cka:
                raise CacheError(f"{self.url}: shard {shard} has no CKA side-output {name!r}")
            state = state_from_bytes(artifacts.read_verified(self.url, rec.cka[name], self.verify))
            origin = state.get(STATE_SHARD_KEY)
            if origin is not None and origin != shard:
                raise IntegrityError(f"{storage.join(self.url, rec.cka[name].name)}: holds the CKA state of shard {origin}, not of {shard} "
                                     "(a state file replaced by another?): re-extract, or run `layerlab cache verify`")
            if STATE_IDS_KEY in state:
                ledger.add(list(state[STATE_IDS_KEY]), shard)
            else:
                untagged = True
            out[shard] = state
        if untagged and self.metadata.tiers:
            problems = self._duplicate_ids()
            if problems:
                raise IntegrityError(problems[0])
        return out

    def cka_merged(self, name: str) -> dict[str, Any] | None:
        """The merged CKA state of side-output ``name`` (None until the extraction completed)."""
        from layerlab.accumulator import state_from_bytes

        entry = self.manifest.cka_merged.get(name)
        return None if entry is None else state_from_bytes(artifacts.read_verified(self.url, entry, self.verify))

    def verify_files(self) -> list[str]:
        """Every problem with the cache's listed files (missing, size, checksum) and duplicate ids; empty when intact."""
        m = self.manifest
        entries = [e for rec in m.shards.values() for e in list(rec.files.values()) + list(rec.cka.values())]
        entries += ([m.quarantine] if m.quarantine else []) + list(m.cka_merged.values())
        problems = artifacts.verify_entries(self.url, entries)
        if not problems:
            problems += self._duplicate_ids()
        if not problems:
            for side in self.metadata.cka:
                try:
                    self.cka_states(str(side.get("name")))
                except (IntegrityError, CacheError) as exc:
                    problems.append(str(exc))
        return problems

    def _duplicate_ids(self) -> list[str]:
        tier = "pooled" if "pooled" in self.metadata.tiers else "frames"
        seen: dict[str, str] = {}
        problems = []
        for shard, entry in (self.tier_entries(tier) if self.manifest.shards else []):
            with self.open_file(entry) as f:
                for uid in pq.read_table(f, columns=["id"]).column("id").to_pylist():
                    if uid in seen:
                        problems.append(f"{self.url}: utterance id {uid!r} in shards {seen[uid]} and {shard}")
                    seen.setdefault(uid, shard)
        return problems[:20]


def _list_matrix(col: pa.ChunkedArray | pa.Array, dim: int, url: str, layer: str) -> np.ndarray:
    """A list<float> column of fixed length ``dim`` as an ``[n, dim]`` array (checked)."""
    sizes = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if len(sizes) and (sizes != dim).any():
        raise IntegrityError(f"{url}: layer {layer} has rows of {int(sizes[sizes != dim][0])} values, expected dim {dim}")
    values = col.flatten() if hasattr(col, "flatten") else col.values
    return np.asarray(values.to_numpy(zero_copy_only=False)).reshape(len(sizes), dim)


def open_cache(url: str, *, verify: bool = True, allow_partial: bool = False, source_url: str | None = None) -> CacheReader:
    """Open the activation cache at ``url``; refuses an unfinished extraction unless ``allow_partial``."""
    url = str(url).rstrip("/")
    meta = read_metadata(url)
    manifest = read_cache_manifest(url)
    reader = CacheReader(url, meta, manifest, verify=verify, allow_partial=allow_partial, source_url=source_url)
    if not manifest.complete and not allow_partial:
        done, total = len(manifest.shards), meta.source.shards
        raise IncompleteCache(
            f"{url}: incomplete cache ({done} of {total} shards extracted); finish it with `layerlab extract` "
            "(same options) or pass --allow-partial to use the finished shards"
        )
    return reader


def _frames_values(col: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """One frames column of a batch as (all fp16 values, values per row), for either encoding.

    Format 2 stores each row as little-endian fp16 bytes (read zero-copy from the Arrow buffers);
    format 1 stored a list<float16>.
    """
    if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
        offset_type = np.int64 if pa.types.is_large_binary(col.type) else np.int32
        _, offset_buf, data = col.buffers()
        offsets = np.frombuffer(offset_buf, offset_type)[col.offset: col.offset + len(col) + 1]
        lengths = np.diff(offsets).astype(np.int64)
        if np.any(lengths % 2):
            raise IntegrityError("frames column holds a row whose byte length is odd (not fp16 values)")
        raw = np.frombuffer(data, np.uint8)[offsets[0]: offsets[-1]] if data is not None and len(col) else np.zeros(0, np.uint8)
        return raw.view("<f2"), lengths // 2
    sizes = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
    return col.flatten().to_numpy(zero_copy_only=False), sizes


def _split_rows(flat: np.ndarray, sizes: np.ndarray, dim: int) -> list[np.ndarray]:
    """A frames column's flat values cut into one ``[num_frames, dim]`` view per row (``sizes`` values each)."""
    return [p.reshape(-1, dim) for p in np.split(flat, np.cumsum(sizes)[:-1])] if len(sizes) else []

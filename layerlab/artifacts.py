"""One artifact vocabulary for datasets and caches: file entries, publish-with-checksum, verify, quarantine.

Every published file is listed in its folder's ``manifest.json`` as a :class:`FileEntry` (relative
name, rows, size, SHA-256); only listed files are part of a dataset or cache, and readers check a
file's size and checksum before trusting it (:func:`read_verified`, :func:`open_verified`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO, Any, Iterable

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from layerlab import storage

MANIFEST_NAME = "manifest.json"
QUARANTINE_NAME = "quarantine.parquet"
#: listed files up to this size are verified and read from memory in one fetch
IN_MEMORY_BYTES = 256 * 2**20

#: one quarantine schema for audio datasets and activation caches
QUARANTINE_SCHEMA = pa.schema(
    [("id", pa.string()), ("source", pa.string()), ("reason", pa.string()), ("stage", pa.string())]
)


class IntegrityError(ValueError):
    """A listed file is missing, has another size or checksum, or its folder is not whole."""


class FileEntry(BaseModel):
    """One published file: path relative to its root, rows, size in bytes, SHA-256 (and audio seconds)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    rows: int = 0
    bytes: int
    sha256: str
    audio_seconds: float = 0.0


class QuarantineRow(BaseModel):
    """An input left out, and why (``stage``: ingest, synth, decode, model...)."""

    id: str
    source: str
    reason: str
    stage: str


class ManifestBase(BaseModel):
    """What every manifest shares: a format name, a version, the quarantine table entry."""

    format: str
    version: int = 1
    quarantine: FileEntry | None = None


def entry_for_bytes(rel: str, data: bytes, rows: int = 0, **more: Any) -> FileEntry:
    """The manifest entry of ``data`` published as ``rel``."""
    return FileEntry(name=rel, rows=rows, bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), **more)


def publish_bytes(root: str, rel: str, data: bytes, rows: int = 0, **more: Any) -> FileEntry:
    """Atomically write ``data`` to ``<root>/<rel>``; returns its entry (size, SHA-256)."""
    storage.atomic_write_bytes(storage.join(root, rel), data)
    return entry_for_bytes(rel, data, rows, **more)


def publish_local(tmp: Path, root: str, rel: str, rows: int = 0, **more: Any) -> FileEntry:
    """Checksum the finished local file ``tmp``, move/upload it to ``<root>/<rel>``; returns its entry."""
    entry = FileEntry(name=rel, rows=rows, bytes=Path(tmp).stat().st_size, sha256=storage.sha256_file(tmp), **more)
    storage.publish_file(Path(tmp), storage.join(root, rel))
    return entry


def publish_table(root: str, rel: str, table: pa.Table, compression: str = "zstd") -> FileEntry:
    """Write ``table`` as Parquet to ``<root>/<rel>`` atomically; returns its entry."""
    import pyarrow.parquet as pq

    url = storage.join(root, rel)
    with storage.atomic_local_then_upload(url, ".parquet") as tmp:
        pq.write_table(table, str(tmp), compression=compression)
        entry = FileEntry(name=rel, rows=table.num_rows, bytes=tmp.stat().st_size, sha256=storage.sha256_file(tmp))
    return entry


def check_entry(root: str, entry: FileEntry) -> str | None:
    """The problem with one listed file (missing, size, checksum), or None when it is intact."""
    url = storage.join(root, entry.name)
    fs, path = storage.url_to_fs(url)
    try:
        size = int(fs.size(path))
    except FileNotFoundError:
        return f"{url}: missing"
    if size != entry.bytes:
        return f"{url}: size {size} bytes, manifest says {entry.bytes}"
    if storage.sha256_url(url) != entry.sha256:
        return f"{url}: checksum mismatch (SHA-256 differs from the manifest)"
    return None


def verify_entries(root: str, entries: Iterable[FileEntry]) -> list[str]:
    """Every problem among ``entries`` (empty when all are intact)."""
    return [p for p in (check_entry(root, e) for e in entries) if p]


def listed_entries(root: str) -> dict[str, FileEntry]:
    """Every file entry the folder's ``manifest.json`` lists (shards, tables, states), by name; {} without a manifest."""
    try:
        doc = storage.read_json(storage.join(root, MANIFEST_NAME))
    except (FileNotFoundError, ValueError):
        return {}
    found: dict[str, FileEntry] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if {"name", "bytes", "sha256"} <= set(node) and isinstance(node["name"], str):
                found[node["name"]] = FileEntry.model_validate(node)
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return found


def folder_sizes(root: str) -> dict[str, int]:
    """Relative name -> size of every file under ``root``, from one listing ({} when it does not exist)."""
    fs, path = storage.url_to_fs(root)
    base = path.rstrip("/")
    try:
        info = fs.find(base, detail=True)
    except FileNotFoundError:
        return {}
    return {k[len(base) + 1:]: int(v.get("size") or 0) for k, v in info.items()
            if v.get("type", "file") == "file" and k.startswith(base + "/")}


def folder_entries(root: str, exclude: Iterable[str] = ()) -> list[FileEntry]:
    """An entry (size, SHA-256) for every file under ``root`` except those under the ``exclude`` subfolders.

    Files the folder's manifest lists with the same size take the manifest's checksum (big shards are not
    read again); the others are checksummed here.
    """
    skip = tuple(e.strip("/") + "/" for e in exclude)
    listed = listed_entries(root)
    out = []
    for name, size in sorted(folder_sizes(root).items()):
        if name.startswith(skip):
            continue
        known = listed.get(name)
        if known is not None and known.bytes == size:
            out.append(FileEntry(name=name, rows=known.rows, bytes=size, sha256=known.sha256))
        else:
            out.append(FileEntry(name=name, bytes=size, sha256=storage.sha256_url(storage.join(root, name))))
    return out


def check_folder(root: str, entries: Iterable[FileEntry], checksums: bool = False) -> list[str]:
    """Problems of the listed files under ``root``: missing or resized always (one listing), changed content with ``checksums``."""
    sizes = folder_sizes(root)
    problems = []
    for entry in entries:
        url = storage.join(root, entry.name)
        size = sizes.get(entry.name)
        if size is None:
            problems.append(f"{url}: missing")
        elif size != entry.bytes:
            problems.append(f"{url}: size {size} bytes, recorded {entry.bytes}")
        elif checksums and storage.sha256_url(url) != entry.sha256:
            problems.append(f"{url}: checksum mismatch (SHA-256 differs from the record)")
    return problems


def read_verified(root: str, entry: FileEntry, verify: bool = True) -> bytes:
    """Read a listed file whole; with ``verify`` its size and SHA-256 must match the entry."""
    url = storage.join(root, entry.name)
    try:
        data = storage.read_bytes(url)
    except FileNotFoundError as exc:
        raise IntegrityError(f"{url}: missing (listed in {storage.join(root, MANIFEST_NAME)})") from exc
    if verify:
        if len(data) != entry.bytes:
            raise IntegrityError(f"{url}: size {len(data)} bytes, manifest says {entry.bytes} (truncated or replaced); rerun the build or pass --no-verify")
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise IntegrityError(f"{url}: checksum mismatch (SHA-256 differs from the manifest: corrupted or replaced); rerun the build or pass --no-verify")
    return data


def open_verified(root: str, entry: FileEntry, verify: bool = True) -> IO[bytes]:
    """A seekable file object over a listed file, checked first.

    Files up to ``IN_MEMORY_BYTES`` are read once, verified and served from memory; larger ones
    (frames shards) are checksummed in a streamed pass and then opened for streaming reads.
    """
    if verify and entry.bytes <= IN_MEMORY_BYTES:
        return pa.BufferReader(read_verified(root, entry))  # a native buffer: no Python callbacks from pyarrow threads
    if verify:
        problem = check_entry(root, entry)
        if problem:
            raise IntegrityError(f"{problem}; rerun the build or pass --no-verify")
    return storage.open_input(storage.join(root, entry.name))


def quarantine_table(rows: Iterable[dict[str, Any] | QuarantineRow]) -> pa.Table:
    """Quarantine rows as a table in the shared schema."""
    plain = [r.model_dump() if isinstance(r, QuarantineRow) else {k: str(r.get(k) or "") for k in QUARANTINE_SCHEMA.names} for r in rows]
    return pa.Table.from_pylist(plain, schema=QUARANTINE_SCHEMA)


__all__ = [
    "FileEntry", "IntegrityError", "ManifestBase", "MANIFEST_NAME", "QUARANTINE_NAME", "QUARANTINE_SCHEMA", "QuarantineRow",
    "check_entry", "check_folder", "entry_for_bytes", "folder_entries", "folder_sizes", "listed_entries", "open_verified", "publish_bytes",
    "publish_local", "publish_table", "quarantine_table", "read_verified", "verify_entries",
]

"""One storage layer for every stage: fsspec URLs, atomic writes, JSON documents, retries.

Any fsspec URL works: plain paths, ``file://``, ``memory://``, ``s3://`` (endpoint and credentials
from the standard AWS environment: ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``,
profiles, instance roles), ``gs://``. Writes are atomic: a reader never sees a half-written object
under its final name (local files are renamed into place; object-store PUTs are atomic by nature).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import posixpath
import random
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import fsspec

log = logging.getLogger(__name__)
T = TypeVar("T")

#: A local folder: when set, every read and write through this module appends one JSON line (op, url, bytes,
#: pid, host, and the study stage from ``LAYERLAB_STAGE``) to ``<folder>/io-<host>-<pid>.jsonl`` -- which
#: process read or wrote which file, and how much (the rehearsal's measured bytes, the tests' "no frames tier
#: read on the driver"). Forwarded to Ray workers.
IO_AUDIT_ENV = "LAYERLAB_IO_AUDIT"

#: Errors that are never worth retrying: the object is missing, forbidden or the call is wrong.
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, ValueError, TypeError)


def _s3_options() -> dict[str, Any]:
    """s3fs options from the standard AWS environment (endpoint override for MinIO/moto/R2)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    client_kwargs: dict[str, Any] = {}
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        client_kwargs["region_name"] = region
    return {"client_kwargs": client_kwargs} if client_kwargs else {}


def protocol_of(url: str) -> str:
    """The fsspec protocol of a URL (``file`` for plain paths)."""
    url = str(url)
    return url.split("://", 1)[0] if "://" in url else "file"


def is_local(url: str) -> bool:
    """True for plain paths and ``file://`` URLs."""
    return protocol_of(url) == "file"


def url_to_fs(url: str | os.PathLike[str]) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for ``url`` and the path inside it."""
    url = str(url)
    proto = protocol_of(url)
    options = _s3_options() if proto in ("s3", "s3a") else {}
    if proto == "file" and "://" not in url:
        url = os.path.abspath(os.path.expanduser(url))
    fs, path = fsspec.core.url_to_fs(url, **options)
    return fs, path


def canonical_url(url: str | os.PathLike[str]) -> str:
    """One spelling per location: ``syn6``, ``./syn6/``, ``/abs/syn6`` and ``file:///abs/syn6`` all give ``/abs/syn6``."""
    text = str(url)
    if protocol_of(text) == "file":
        path = text[len("file://"):] if text.startswith("file://") else text
        return os.path.normpath(os.path.abspath(os.path.expanduser(path)))
    return text.rstrip("/")


def join(url: str, *parts: str) -> str:
    """Join path parts onto a URL with ``/`` (works for object stores and local paths)."""
    out = str(url).rstrip("/")
    for p in parts:
        out = f"{out}/{str(p).strip('/')}"
    return out


def with_retries(fn: Callable[[], T], *, what: str, attempts: int = 5, base_delay: float = 0.2) -> T:
    """Call ``fn`` retrying transient errors (network, throttling, 5xx) with jittered backoff.

    Permanent errors (missing object, permission, bad argument) are raised at once.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except _PERMANENT:
            raise
        except Exception as exc:  # noqa: BLE001 - classify below
            if attempt == attempts or not _is_transient(exc):
                raise
            delay = base_delay * (2 ** (attempt - 1)) * (0.5 + random.random())
            log.warning("transient error on %s (attempt %d/%d): %s; retrying in %.2fs", what, attempt, attempts, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _is_transient(exc: BaseException) -> bool:
    """Heuristic classification of object-store errors as retryable."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    name = type(exc).__name__
    text = str(exc)
    transient_names = ("ReadTimeout", "ConnectTimeout", "EndpointConnectionError", "ConnectionClosedError", "ClientPayloadError", "ServerDisconnectedError", "ResponseStreamingError")
    if any(n in name for n in transient_names):
        return True
    markers = ("SlowDown", "Throttl", "RequestTimeout", "InternalError", "ServiceUnavailable", "503", "500 ", "502", "504", "Connection reset")
    return isinstance(exc, OSError) and any(m in text for m in markers)


def audit(op: str, url: str, nbytes: int) -> None:
    """Record one read or write in the IO audit folder (see ``IO_AUDIT_ENV``); nothing when it is not set."""
    folder = os.environ.get(IO_AUDIT_ENV)
    if not folder:
        return
    import socket

    line = json.dumps({"op": op, "url": str(url), "bytes": int(nbytes), "pid": os.getpid(), "host": socket.gethostname(), "t": time.time(),
                       "stage": os.environ.get("LAYERLAB_STAGE")})
    with open(os.path.join(folder, f"io-{socket.gethostname()}-{os.getpid()}.jsonl"), "a") as f:
        f.write(line + "\n")


class _CountingReader:
    """A file object that counts the bytes read through it and audits them when closed."""

    def __init__(self, f: Any, url: str) -> None:
        self._f, self._url, self._n = f, url, 0

    def read(self, *args: Any) -> bytes:
        data = self._f.read(*args)
        self._n += len(data)
        return data

    def readinto(self, buf: Any) -> int:
        data = self.read(len(memoryview(buf)))
        memoryview(buf)[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self._f.closed:
            audit("read", self._url, self._n)
        self._f.close()

    def __enter__(self) -> "_CountingReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def exists(url: str) -> bool:
    """Whether an object or directory exists at ``url``."""
    fs, path = url_to_fs(url)
    return with_retries(lambda: fs.exists(path), what=f"exists {url}")


def read_bytes(url: str) -> bytes:
    """Read a whole object. Raises FileNotFoundError naming the URL when it is missing."""
    fs, path = url_to_fs(url)
    try:
        data = with_retries(lambda: fs.cat_file(path), what=f"read {url}")
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{url}: no such file or object") from exc
    audit("read", url, len(data))
    return data


def atomic_write_bytes(url: str, data: bytes) -> None:
    """Write ``data`` so that ``url`` holds either the old object or the complete new one."""
    audit("write", url, len(data))
    fs, path = url_to_fs(url)
    if is_local(url):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        return
    # Object stores: a single PUT (or a completed multipart upload) is atomic.
    with_retries(lambda: fs.pipe_file(path, data), what=f"write {url}")


@contextlib.contextmanager
def atomic_local_then_upload(url: str, suffix: str = "") -> Iterator[Path]:
    """Yield a local temporary file path; on success it is moved/uploaded atomically to ``url``.

    Used for writers that need a real file (Parquet, torch.save). On error nothing is published.
    """
    tmp = local_temp_for(url, suffix)
    try:
        yield tmp
        publish_file(tmp, url)
    finally:
        tmp.unlink(missing_ok=True)


def local_temp_for(url: str, suffix: str = "") -> Path:
    """A fresh local temporary path from which ``publish_file`` can move/upload to ``url`` cheaply."""
    if is_local(url):
        target = Path(url_to_fs(url)[1])
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}{suffix}")
    fd, name = tempfile.mkstemp(prefix="layerlab-", suffix=suffix)
    os.close(fd)
    return Path(name)


def publish_file(local: Path, url: str) -> None:
    """Atomically make the complete local file ``local`` visible at ``url``, then drop ``local``."""
    if os.environ.get(IO_AUDIT_ENV):
        audit("write", url, Path(local).stat().st_size)
    fs, path = url_to_fs(url)
    try:
        if is_local(url):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            os.replace(local, path)
        else:
            with_retries(lambda: fs.put_file(str(local), path), what=f"upload {url}")
    finally:
        Path(local).unlink(missing_ok=True)


def write_json(url: str, obj: Any) -> None:
    """Atomically write a JSON document (sorted keys, so equal content gives equal bytes)."""
    atomic_write_bytes(url, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def read_json(url: str) -> Any:
    """Read a JSON document; the error names the URL when it is missing or malformed."""
    raw = read_bytes(url)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{url}: not valid JSON ({exc})") from exc


def _json_default(o: Any) -> Any:
    if hasattr(o, "model_dump"):
        return o.model_dump()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialise {type(o).__name__} to JSON")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a local file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_url(url: str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of an object at any URL, streamed."""
    fs, path = url_to_fs(url)

    def run() -> tuple[str, int]:
        h, size = hashlib.sha256(), 0  # a retried read starts over
        with fs.open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
                size += len(block)
        return h.hexdigest(), size

    digest, size = with_retries(run, what=f"checksum {url}")
    audit("read", url, size)
    return digest


def list_files(url: str, suffix: str = "") -> list[str]:
    """URLs of the files directly under ``url`` whose names end with ``suffix``, sorted."""
    fs, path = url_to_fs(url)
    if not fs.exists(path):
        return []
    proto = protocol_of(url)
    names = sorted(p for p in fs.ls(path, detail=False) if str(p).endswith(suffix) and not Path(str(p)).name.startswith("."))
    if proto == "file":
        return [str(p) for p in names]
    return [f"{proto}://{str(p).lstrip('/')}" if proto != "memory" else f"memory://{str(p)}" for p in names]


class OutsideOutput(ValueError):
    """A path that would leave the output folder it must stay in (``..`` parts, a symlink out, a hostile name)."""


#: characters of a name that becomes one path component (a model, dataset, stage or joint member folder)
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def check_name(name: Any, what: str) -> str:
    """``name`` when it is safe as one folder name: letters, digits, ``_ . -``, not starting with ``.``
    (so never ``.``, ``..`` or a hidden file); anything else (separators, control characters, empty) is refused."""
    text = name if isinstance(name, str) else ""
    if not _NAME.fullmatch(text) or text.startswith(".") or len(text) > 128:
        raise ValueError(f"{what} {name!r}: not a safe folder name (allowed: 1-128 letters, digits, '_', '.', '-', not starting "
                         "with '.'; so no '.', '..', separators or control characters)")
    return text


def normalise(url: str | os.PathLike[str]) -> str:
    """``url`` with ``.``, ``..`` and repeated separators resolved lexically: an absolute local path, or
    ``protocol://bucket/key`` for object stores (a key cannot climb above its bucket)."""
    text = str(url)
    if protocol_of(text) == "file":
        return canonical_url(text)
    proto, rest = text.split("://", 1)
    norm = posixpath.normpath("/" + rest).lstrip("/")
    return f"{proto}://{norm}" if norm not in ("", ".") else f"{proto}://"


def inside(root: str | os.PathLike[str], url: str | os.PathLike[str]) -> str:
    """The normalised ``url`` after checking that it is ``root`` or lies below it; :class:`OutsideOutput` otherwise.

    Lexical for every URL (``s3://b/out/cache/../..`` is ``s3://b``, outside ``s3://b/out``), and for local
    paths also after resolving symlinks (a link inside ``root`` that points elsewhere is outside).
    """
    base, target = normalise(root), normalise(url)
    if protocol_of(base) != protocol_of(target) or not _below(base, target):
        raise OutsideOutput(f"{url}: resolves to {target}, outside the output folder {base}; refusing to write or delete there")
    if protocol_of(base) == "file":
        real_base, real_target = os.path.realpath(base), os.path.realpath(target)
        if not _below(real_base, real_target):
            raise OutsideOutput(f"{url}: resolves (through a symbolic link) to {real_target}, outside the output folder "
                                f"{real_base}; refusing to write or delete there")
    return target


def _below(base: str, target: str) -> bool:
    base = base.rstrip("/") or "/"
    return target == base or target.startswith(base if base.endswith("/") else base + "/")


def join_inside(root: str, *parts: str) -> str:
    """``join(root, *parts)``, checked to stay inside ``root`` (parts may come from names in a config)."""
    url = join(root, *parts)
    inside(root, url)
    return url


def remove(url: str, recursive: bool = False, *, within: str, keep: tuple[str, ...] = ()) -> None:
    """Delete an object (or a directory tree with ``recursive``) that lies inside ``within``; missing is not an error.

    Every remover names the output folder it works in: the path is normalised and refused
    (:class:`OutsideOutput`) unless it lies inside ``within``, before anything is deleted. ``keep``: names
    directly under ``url`` that survive a recursive removal (the output's lease file).
    """
    url = inside(within, url)
    fs, path = url_to_fs(url)
    if is_local(url):
        p = Path(path)
        if p.is_dir() and not p.is_symlink() and recursive:
            if keep:
                for child in p.iterdir():
                    if child.name not in keep:
                        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            else:
                shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        return
    if fs.exists(path):
        if keep and recursive and fs.isdir(path):
            for child in fs.ls(path, detail=False):
                if posixpath.basename(str(child).rstrip("/")) not in keep:
                    fs.rm(child, recursive=True)
            return
        fs.rm(path, recursive=recursive)


def check_input(url: str) -> None:
    """Fail fast, naming ``url``, when its object store cannot be reached: a missing bucket, bad credentials, a bad endpoint.

    Local and ``memory://`` URLs pass (the readers name missing files themselves).
    """
    if is_local(url) or protocol_of(url) == "memory":
        return
    try:
        fs, path = url_to_fs(url)
        bucket = path.split("/", 1)[0]
        fs.invalidate_cache(bucket)
        try:
            fs.info(bucket)  # HEAD bucket: tells a missing bucket from refused credentials
        except PermissionError:
            try:
                fs.info(path)  # keys allowed to read objects but not to list the bucket still pass
            except FileNotFoundError:
                pass  # the bucket answered for the key: it exists and these credentials reach it
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{url}: bucket {bucket!r} does not exist") from exc
    except PermissionError as exc:
        raise PermissionError(f"{url}: access denied [{_first_line(exc)}]: the credentials are missing, wrong or not allowed here") from exc
    except Exception as exc:  # noqa: BLE001 - no credentials, endpoint, client setup: one line naming the URL
        raise PermissionError(f"{url}: cannot reach the object store [{_first_line(exc)}]") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def check_output_dir(url: str) -> None:
    """Fail fast when ``url`` cannot hold output files: it is a file, a parent is a file, it is not writable,
    or (object stores) its bucket is missing or the credentials are refused."""
    fs, path = url_to_fs(url)
    if is_local(url):
        p = Path(path)
        for parent in [p, *p.parents]:
            if parent.exists():
                if not parent.is_dir():
                    raise NotADirectoryError(f"{url}: output must be a folder, but {parent} is a file")
                if not os.access(parent, os.W_OK):
                    raise PermissionError(f"{url}: no permission to write in {parent}")
                return
        return
    check_input(url)
    try:
        is_file = fs.isfile(path)
    except Exception as exc:  # noqa: BLE001 - credentials, endpoint: one line naming the URL
        raise PermissionError(f"{url}: cannot reach the output location [{_first_line(exc)}]") from exc
    if is_file:
        raise NotADirectoryError(f"{url}: output must be a folder, but an object exists at that key")


def open_input(url: str, mode: str = "rb") -> Any:
    """Open an object for streaming reads (a seekable file object)."""
    fs, path = url_to_fs(url)
    try:
        f = fs.open(path, mode)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{url}: no such file or object") from exc
    return _CountingReader(f, url) if os.environ.get(IO_AUDIT_ENV) and "r" in mode else f

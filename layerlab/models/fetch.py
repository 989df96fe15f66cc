"""Fetch a checkpoint (file or folder) at any fsspec URL into a local cache and return its path.

Local paths and ``file://`` URLs are used in place. Remote objects land under
``$LAYERLAB_CACHE`` (default ``~/.cache/layerlab/models``) in a folder named by a hash of the URL,
written to a temporary name first and renamed, so an interrupted download is never used. Each copy
records the remote object's identity (size, ETag or modification time); a copy whose remote has
changed since is fetched again (a repaired or retrained checkpoint at the same URL), and an unreachable
remote falls back to the copy (offline use).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator, Sequence

from layerlab.models.errors import CheckpointError
from layerlab.storage import is_local as _is_local
from layerlab.storage import url_to_fs as _url_to_fs


def cache_root() -> Path:
    """Folder that holds fetched checkpoints."""
    return Path(os.environ.get("LAYERLAB_CACHE", Path.home() / ".cache" / "layerlab" / "models"))


def _local_path(url: str) -> Path:
    return Path(url[len("file://") :] if url.startswith("file://") else url).expanduser()


@contextlib.contextmanager
def _fetch_errors(what: str, url: str) -> Iterator[None]:
    """Turn any storage failure while fetching into a CheckpointError naming the URL."""
    try:
        yield
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{what} {url}: cannot fetch ({type(exc).__name__}: {exc})") from exc


def _cache_dir_for(url: str) -> Path:
    return cache_root() / hashlib.sha256(url.encode()).hexdigest()[:20]


def _identity(info: dict) -> dict[str, str]:
    """What tells two versions of a remote object apart: its size and ETag / modification time, as the store reports them."""
    keys = ("size", "ETag", "etag", "LastModified", "last_modified", "mtime", "updated", "md5Hash")
    return {k: str(info[k]) for k in keys if info.get(k) is not None}


def _identity_file(target: Path) -> Path:
    return target.with_name(f".{target.name}.source.json")


def _cached_copy_is_current(target: Path, fs: object, path: str) -> bool:
    """True when the cached copy was fetched from the remote object as it is now (or the remote cannot be asked)."""
    try:
        recorded = json.loads(_identity_file(target).read_text())
    except (OSError, ValueError):
        recorded = None
    try:
        fs.invalidate_cache(path)  # type: ignore[attr-defined]  # listings are cached per process
        now = _identity(fs.info(path))  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - offline or no permission to stat: the copy is all there is
        return True
    return recorded == now


def fetch_file(url: str, what: str = "checkpoint") -> Path:
    """Local path of the file at ``url``; remote files are downloaded to the cache once."""
    if _is_local(url):
        path = _local_path(url)
        if not path.is_file():
            reason = "is a directory, expected a file" if path.is_dir() else "does not exist"
            raise CheckpointError(f"{what} {url}: {reason}")
        return path
    target = _cache_dir_for(url) / (url.rstrip("/").rsplit("/", 1)[-1] or "checkpoint")
    if target.is_file():
        try:
            fs, path = _url_to_fs(url)
        except Exception:  # noqa: BLE001 - no filesystem for the URL here (offline extras): use the copy
            return target
        if _cached_copy_is_current(target, fs, path):
            return target
    with _fetch_errors(what, url):
        fs, path = _url_to_fs(url)
        fs.invalidate_cache(path)  # before the existence check too: a cached listing may predate the object
        if not fs.isfile(path):
            raise CheckpointError(f"{what} {url}: does not exist (or is not a file)")
        identity = _identity(fs.info(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        fs.get_file(path, str(tmp))
        os.replace(tmp, target)
        _identity_file(target).write_text(json.dumps(identity))
    return target


def fetch_dir(url: str, required: Sequence[str], optional: Sequence[str] = (), what: str = "bundle") -> Path:
    """Local folder holding ``required`` (and any present ``optional``) files of the folder at ``url``."""
    if _is_local(url):
        path = _local_path(url)
        if not path.is_dir():
            raise CheckpointError(f"{what} {url}: {'is a file, expected a directory' if path.exists() else 'does not exist'}")
        missing = [name for name in required if not (path / name).is_file()]
        if missing:
            raise CheckpointError(f"{what} {url}: missing {', '.join(missing)}")
        return path
    target = _cache_dir_for(url)
    if all((target / name).is_file() for name in required):
        return target
    with _fetch_errors(what, url):
        fs, root = _url_to_fs(url)
        missing = [name for name in required if not fs.isfile(f"{root.rstrip('/')}/{name}")]
        if missing:
            raise CheckpointError(f"{what} {url}: missing {', '.join(missing)}")
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        tmp.mkdir(parents=True)
        for name in list(required) + list(optional):
            remote = f"{root.rstrip('/')}/{name}"
            if fs.isfile(remote):
                fs.get_file(remote, str(tmp / name))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    return target


def load_torch_file(path: Path | str, what: str) -> object:
    """``torch.load(weights_only=True)`` on CPU with a readable CheckpointError when it fails.

    Memory-mapped where the file allows it (zip format): the weights are copied into the model from the page
    cache, so loading a Large model does not hold a second full copy in the process (1.3 GB for WavLM Large).
    """
    import torch

    try:
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
        return torch.load(str(path), map_location="cpu", weights_only=True)  # a legacy (non-zip) file cannot be mapped
    except Exception as exc:
        raise CheckpointError(
            f"{what} {path}: not a readable torch checkpoint with plain tensors/containers "
            f"(weights_only=True): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc

"""One writer per output folder: a lease file at the root of ``--out``, held while a command writes there.

``study``, ``probe``, ``train``, ``extract`` and ``cka`` take the lease once, at the command level (their
CLI and ``jobs/`` entry points alike); the library calls a study makes inside its own ``--out`` take none,
so nothing nests or deadlocks. The lease (``<out>/.layerlab-lease.json``) records the holder (a random
id), the command, host, pid, start time and a heartbeat that a background thread refreshes.

Creating it is atomic: a hard link that fails when the file exists (local disks, NFS), a conditional
PUT with ``If-None-Match: *`` on ``s3://`` (AWS S3 and moto; S3-compatible stores that ignore the
header, and other fsspec backends, fall back to check-then-write, which leaves a narrow race).
Heartbeats and takeovers are conditional too (``If-Match`` on the ETag on S3; a rename-and-check locally).
A second writer gets one ``error:`` line naming the holder. A lease without a heartbeat for
``LAYERLAB_LEASE_STALE_SECONDS`` (default 600) may be taken over with ``--force``; the takeover is
recorded under ``<out>/.layerlab-lease-takeovers/``. A holder that finds its lease taken stops.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

from layerlab import storage

LEASE_NAME = ".layerlab-lease.json"
TAKEOVERS = ".layerlab-lease-takeovers"
#: names a recursive clean of an output root keeps (``storage.remove(..., keep=KEEP)``)
KEEP = (LEASE_NAME, TAKEOVERS)
STALE_ENV = "LAYERLAB_LEASE_STALE_SECONDS"
DEFAULT_STALE_S = 600.0


class LeaseHeld(FileExistsError):
    """Another writer holds the output folder (a user-facing, one-line error)."""


class LeaseLost(RuntimeError):
    """This process's lease was taken over (it stopped heartbeating for longer than the stale limit)."""


def stale_after() -> float:
    """Seconds without a heartbeat after which a lease may be taken over with ``--force``."""
    try:
        return max(1.0, float(os.environ.get(STALE_ENV, DEFAULT_STALE_S)))
    except ValueError:
        raise ValueError(f"{STALE_ENV}={os.environ[STALE_ENV]!r}: expected a number of seconds") from None


def _now() -> float:
    return time.time()


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def describe(record: dict[str, Any], now: float | None = None) -> str:
    """``layerlab study (pid 12 on host h, started ..., last heartbeat 5 s ago)``."""
    now = _now() if now is None else now
    beat = float(record.get("heartbeat_unix") or 0.0)
    return (f"{record.get('command', 'unknown command')} (pid {record.get('pid', '?')} on host {record.get('host', '?')}, "
            f"started {record.get('started_at', '?')}, last heartbeat {_ago(now - beat) + ' ago' if beat else 'never'})")


# -- backends: atomic create, conditional replace, read with a version ----------------------------------

class _Backend:
    """Lease file operations on one URL; ``version`` is an opaque token for compare-and-swap."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, self.path = storage.url_to_fs(url)
        self.local = storage.is_local(url)
        self.s3 = storage.protocol_of(url) in ("s3", "s3a")

    def read(self) -> tuple[dict[str, Any] | None, Any]:
        """(record, version) or (None, None) when there is no lease; an unreadable file reads as ``{}``."""
        try:
            if self.local:
                with open(self.path, "rb") as f:
                    raw = f.read()
                    st = os.fstat(f.fileno())
                version: Any = (st.st_ino, st.st_mtime_ns, st.st_size)
            else:
                info = storage.with_retries(lambda: self.fs.info(self.path, refresh=True) if self.s3 else self.fs.info(self.path),
                                            what=f"lease {self.url}")
                version = info.get("ETag") or info.get("mtime") or info.get("LastModified")
                raw = storage.with_retries(lambda: self.fs.cat_file(self.path), what=f"lease {self.url}")
        except FileNotFoundError:
            return None, None
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = {}
        return (record if isinstance(record, dict) else {}), version

    def create(self, data: bytes) -> Any:
        """Write the lease only if none exists (FileExistsError otherwise); returns its version."""
        if self.local:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            tmp = f"{self.path}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.path)  # atomic, fails with FileExistsError when a lease is there
            finally:
                os.unlink(tmp)
            return self.read()[1]
        out = storage.with_retries(lambda: self.fs.pipe_file(self.path, data, mode="create"), what=f"lease {self.url}")
        return (out or {}).get("ETag") if isinstance(out, dict) else self.read()[1]

    def replace(self, data: bytes, version: Any) -> Any:
        """Overwrite the lease if it is still at ``version``; returns the new version (LeaseLost when it moved)."""
        if self.local:
            current = self.read()[1]
            if current != version:
                raise LeaseLost(f"{self.url}: the lease changed")
            storage.atomic_write_bytes(self.path, data)
            return self.read()[1]
        if self.s3:
            try:
                out = storage.with_retries(lambda: self.fs.pipe_file(self.path, data, IfMatch=version), what=f"lease {self.url}")
            except (FileNotFoundError, FileExistsError) as exc:
                raise LeaseLost(f"{self.url}: the lease is gone") from exc
            except OSError as exc:
                if "pre-condition" in str(exc).lower() or "precondition" in str(exc).lower():
                    raise LeaseLost(f"{self.url}: the lease changed") from exc
                raise
            return (out or {}).get("ETag") if isinstance(out, dict) else self.read()[1]
        if self.read()[1] != version:  # other object stores: check, then write (a narrow race)
            raise LeaseLost(f"{self.url}: the lease changed")
        storage.atomic_write_bytes(self.url, data)
        return self.read()[1]

    def take_over(self, data: bytes, version: Any) -> Any:
        """Replace a stale lease read at ``version`` by ours, atomically where the backend allows it."""
        if not self.local:
            return self.replace(data, version)
        aside = f"{self.path}.stale-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError as exc:
            raise LeaseLost(f"{self.url}: the lease moved") from exc
        st = os.stat(aside)
        if (st.st_ino, st.st_mtime_ns, st.st_size) != version:  # refreshed (or replaced) after we judged it stale
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
            os.unlink(aside)
            raise LeaseLost(f"{self.url}: the lease was refreshed")
        os.unlink(aside)
        return self.create(data)

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.local:
                os.unlink(self.path)
            else:
                storage.with_retries(lambda: self.fs.rm_file(self.path), what=f"lease {self.url}")


# -- the lease ------------------------------------------------------------------------------------------

@dataclass
class Lease:
    """A held lease: ``release()`` (or leaving ``held``) removes it; a daemon thread keeps its heartbeat fresh."""

    out: str
    record: dict[str, Any]
    backend: _Backend
    version: Any
    interval: float
    created_out: bool = False  # the lease made the --out folder: a run that wrote nothing leaves no empty folder behind
    lost: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.backend.url

    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="layerlab-lease", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        """Refresh the heartbeat once (LeaseLost when another writer took the lease over)."""
        record = dict(self.record, heartbeat_unix=_now())
        record["heartbeat_at"] = _iso(record["heartbeat_unix"])
        self.version = self.backend.replace(_encode(record), self.version)
        self.record = record

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except LeaseLost:
                current, _ = self.backend.read()
                holder = describe(current) if current else "nobody (the lease file was removed)"
                self.lost = f"{self.out}: lost the output lease to {holder}: stopping so that one writer remains"
                print(f"error: {self.lost}", file=sys.stderr, flush=True)
                import _thread

                _thread.interrupt_main()
                return
            except Exception as exc:  # noqa: BLE001 - a transient storage problem: try again at the next beat
                print(f"warning: {self.url}: heartbeat failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                      file=sys.stderr, flush=True)

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        current, _ = self.backend.read()
        if current is not None and current.get("holder") == self.record["holder"]:
            self.backend.delete()
        if self.created_out and self.backend.local:
            with contextlib.suppress(OSError):  # only when empty: a command that failed before writing leaves nothing
                os.rmdir(self.out)


def _encode(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()


def _record(command: str) -> dict[str, Any]:
    now = _now()
    return {"holder": uuid.uuid4().hex, "command": command, "host": socket.gethostname(), "pid": os.getpid(),
            "started_at": _iso(now), "heartbeat_unix": now, "heartbeat_at": _iso(now)}


def _ancestors(out: str) -> list[str]:
    """Folders above ``out`` (local: up to ``/``; object stores: up to the bucket) where an enclosing lease may live."""
    norm = storage.normalise(out)
    found = []
    if storage.is_local(norm):
        parent = os.path.dirname(norm)
        while parent and parent != os.path.dirname(parent):
            found.append(parent)
            parent = os.path.dirname(parent)
        return found
    proto, rest = norm.split("://", 1)
    parts = rest.split("/")
    return [f"{proto}://{'/'.join(parts[:i])}" for i in range(len(parts) - 1, 0, -1)]


def _check_enclosing(out: str, stale: float) -> None:
    """Refuse an ``--out`` inside the output of a live writer (a study writes its stages below its own ``--out``)."""
    for folder in _ancestors(out):
        try:
            record, _ = _Backend(storage.join(folder, LEASE_NAME)).read()
        except OSError:  # a folder above we may not read (another user's, a bucket root we may not list): no lease of ours
            continue
        if record is not None and _now() - float(record.get("heartbeat_unix") or 0.0) < stale:
            raise LeaseHeld(f"{out}: lies inside {folder}, the output of a running writer: {describe(record)}; use another --out")


def acquire(out: str, command: str, *, force: bool = False) -> Lease:
    """Take the lease of ``out`` for ``command`` (LeaseHeld naming the holder when another writer has it)."""
    out = storage.normalise(out)
    stale = stale_after()
    _check_enclosing(out, stale)
    backend = _Backend(storage.join(out, LEASE_NAME))
    created = backend.local and not os.path.isdir(out)
    mine = _record(command)
    for _ in range(3):  # a lease released or taken over between our read and our write: look again
        try:
            version = backend.create(_encode(mine))
            lease = Lease(out, mine, backend, version, interval=min(30.0, max(0.2, stale / 6)), created_out=created)
            lease.start()
            return lease
        except FileExistsError:
            pass
        current, version = backend.read()
        if current is None:
            continue
        age = _now() - float(current.get("heartbeat_unix") or 0.0)
        if age < stale:
            raise LeaseHeld(f"{out}: another writer holds this output: {describe(current)}; wait for it to finish, or if it "
                            f"died, rerun with --force once it has had no heartbeat for {_ago(stale)}; {STALE_ENV} sets that limit")
        if not force:
            raise LeaseHeld(f"{out}: a stale lease (no heartbeat for {_ago(age)}) of {describe(current)}; if that run is gone, "
                            "rerun with --force to take the output over")
        taken = dict(mine, took_over={**current, "taken_at": _iso(_now()), "silent_for_s": round(age, 1)})
        try:
            version = backend.take_over(_encode(taken), version)
        except (LeaseLost, FileExistsError):
            continue
        storage.write_json(storage.join(out, TAKEOVERS, f"{taken['started_at'].replace(':', '')}-{mine['holder'][:8]}.json"),
                           {"previous": current, "by": {k: v for k, v in taken.items() if k != "took_over"}})
        print(f"note: {out}: took over the stale lease of {describe(current)}", file=sys.stderr, flush=True)
        lease = Lease(out, taken, backend, version, interval=min(30.0, max(0.2, stale / 6)))
        lease.start()
        return lease
    raise LeaseHeld(f"{out}: the lease keeps changing hands; another writer is starting there")


@contextlib.contextmanager
def held(out: str, command: str, *, force: bool = False) -> Iterator[Lease]:
    """Hold the lease of ``out`` for the duration of the block (released on any exit)."""
    lease = acquire(out, command, force=force)
    try:
        yield lease
    finally:
        lease.release()

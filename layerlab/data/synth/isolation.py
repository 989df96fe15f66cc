"""Run a function in a short-lived fork so it starts from this process's exact state every time.

libespeak-ng keeps hidden state between syntheses; forking a process that has initialised the
engine but never spoken gives every utterance the same starting state, hence byte-identical audio
whatever else the worker rendered before.
"""

from __future__ import annotations

import os
import pickle
import traceback
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class ForkedCallError(RuntimeError):
    """The function raised (or the child died) inside the fork; the message carries the cause."""


def call_in_fork(fn: Callable[..., T], *args: Any) -> T:
    """Return ``fn(*args)`` computed in a forked child; its exception is re-raised as ForkedCallError."""
    if not hasattr(os, "fork"):
        raise ForkedCallError("deterministic synthesis needs os.fork (Linux or macOS)")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: compute, send, and leave without running the parent's cleanup
        os.close(read_fd)
        code = 0
        try:
            payload = pickle.dumps(("ok", fn(*args)), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
            code = 1
            payload = pickle.dumps(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))
        try:
            with os.fdopen(write_fd, "wb") as out:
                out.write(payload)
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise ForkedCallError(f"child process {pid} died without a result (wait status {status})")
    kind, value = pickle.loads(data)
    if kind == "error":
        raise ForkedCallError(value.strip())
    return value

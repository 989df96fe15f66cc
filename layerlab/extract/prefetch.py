"""Run an iterator in a background thread with a bounded queue (decode ahead of the model, bounded memory)."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_END = object()


def prefetch(items: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Yield ``items`` produced by a daemon thread at most ``depth`` ahead; re-raises its errors here.

    The thread starts at the call, not at the first ``next``: a shard's decode runs ahead while
    the model is still busy with the previous shard.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as exc:  # noqa: BLE001 - forwarded to the consumer
            q.put(exc)

    thread = threading.Thread(target=produce, daemon=True, name="layerlab-prefetch")
    thread.start()
    return Prefetched(q, stop)


class Prefetched(Iterator[T]):
    """The consumer side of :func:`prefetch`; ``close()`` (or exhaustion, or an error) stops the producer thread."""

    def __init__(self, q: queue.Queue, stop: threading.Event) -> None:
        self.q, self.stop = q, stop

    def __next__(self) -> T:
        if self.stop.is_set():
            raise StopIteration
        item = self.q.get()
        if item is _END:
            self.stop.set()
            raise StopIteration
        if isinstance(item, BaseException):
            self.stop.set()
            raise item
        return item

    def close(self) -> None:
        """Stop the producer (it exits at its next put) and drop what it queued."""
        self.stop.set()

    def __del__(self) -> None:
        self.stop.set()

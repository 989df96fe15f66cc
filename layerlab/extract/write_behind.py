"""Write-behind for tier writers: Parquet encoding, compression and row-group writes run in a background thread.

The model thread only hands over each utterance's arrays; a bounded byte budget (default two row
groups) caps the memory held in the queue and makes the model wait only when the writer cannot
keep up. pyarrow's encoders and zstd release the GIL, so on a multi-core actor the frames tier's
cost leaves the model's path. Errors in the writer thread are raised in the model thread.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from layerlab.artifacts import FileEntry
from layerlab.cache.writer import TierWriter, UtteranceFeatures


def _nbytes(feats: UtteranceFeatures) -> int:
    frames = sum(f.nbytes for f in feats.frames) if feats.frames is not None else 0
    return frames + sum(m.nbytes + s.nbytes for m, s in zip(feats.means, feats.stds))


class WriteBehind:
    """Feeds ``writers`` from one background thread; ``add`` blocks only while ``max_pending_bytes`` are queued."""

    def __init__(self, writers: list[TierWriter], max_pending_bytes: int) -> None:
        self.writers = writers
        self.max_pending = max(1, int(max_pending_bytes))
        self.pending = 0
        self.items: deque[tuple[dict[str, Any], UtteranceFeatures, int] | None] = deque()
        self.cond = threading.Condition()
        self.error: BaseException | None = None
        self.wait_seconds = 0.0  # time the model thread spent waiting for the writer (back-pressure)
        self.thread_cpu_seconds = 0.0  # CPU time of the writer thread (encoding, compression, writes)
        self.thread = threading.Thread(target=self._work, daemon=True, name="layerlab-write-behind")
        self.thread.start()

    def add(self, row: dict[str, Any], feats: UtteranceFeatures) -> None:
        """Queue one utterance for every writer (raises the writer thread's error, if any)."""
        import time

        size = _nbytes(feats)
        with self.cond:
            t0 = time.perf_counter()
            while self.pending > 0 and self.pending + size > self.max_pending and self.error is None:
                self.cond.wait()
            self.wait_seconds += time.perf_counter() - t0
            if self.error is not None:
                raise self.error
            self.items.append((row, feats, size))
            self.pending += size
            self.cond.notify_all()

    def _work(self) -> None:
        import time

        while True:
            with self.cond:
                while not self.items:
                    self.cond.wait()
                item = self.items.popleft()
            if item is None:
                self.thread_cpu_seconds = time.thread_time()
                return
            row, feats, size = item
            try:
                if self.error is None:
                    for w in self.writers:
                        w.add(row, feats)
            except BaseException as exc:  # noqa: BLE001 - handed to the model thread
                self.error = exc
            with self.cond:
                self.pending -= size
                self.cond.notify_all()

    def _stop(self) -> None:
        with self.cond:
            self.items.append(None)
            self.cond.notify_all()
        self.thread.join()

    def finish(self) -> dict[str, FileEntry]:
        """Drain the queue, then close and publish every writer; ``{tier: entry}``."""
        self._stop()
        if self.error is not None:
            raise self.error
        return {w.tier: w.finish() for w in self.writers}

    def abort(self) -> None:
        """Stop the thread and drop every unpublished file."""
        if self.thread.is_alive():
            self.error = self.error or RuntimeError("aborted")
            self._stop()
        for w in self.writers:
            w.abort()

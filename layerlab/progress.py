"""Progress for long work: a bar per command (live on a terminal, a line every 15 s in logs: `ray job submit`, CI),
and one status line for the stages a study runs at once.

Inside a study, stage threads report to a :class:`StatusBoard` instead of drawing their own bars (several tqdm bars
from parallel threads interleave into an unreadable stream): on a terminal one status line is redrawn in place
below the stage lines; in logs it is printed as a plain line at most every ``log_interval`` seconds.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Any, Callable, Iterator, TextIO

from tqdm import tqdm

_ROUTE = threading.local()


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar on stderr; when stderr is not a terminal, updates are throttled so logs stay short.

    In a thread that reports to a status board (a study stage) the bar is that board's entry instead.
    """
    board = getattr(_ROUTE, "board", None)
    if board is not None:
        return BoardBar(board, _ROUTE.key, total, unit)
    interactive = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=interactive,
                mininterval=0.1 if interactive else 15.0, **kwargs)


@contextlib.contextmanager
def report_to(board: "StatusBoard", key: str) -> Iterator[None]:
    """Route the progress bars this thread creates to ``board`` under ``key`` (a study stage id)."""
    previous = (getattr(_ROUTE, "board", None), getattr(_ROUTE, "key", None))
    _ROUTE.board, _ROUTE.key = board, key
    board.start(key)
    try:
        yield
    finally:
        board.finish(key)
        _ROUTE.board, _ROUTE.key = previous


class BoardBar:
    """The tqdm calls layerlab makes (update, set_postfix_str, close), recorded on a status board."""

    def __init__(self, board: "StatusBoard", key: str, total: int, unit: str) -> None:
        self.board, self.key, self.total, self.unit, self.n = board, key, int(total), unit, 0
        board.update(key, self.n, self.total, unit)

    def update(self, n: int = 1) -> None:
        self.n += n
        self.board.update(self.key, self.n, self.total, self.unit)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass  # the status line stays short: counts only

    def close(self) -> None:
        pass


class StatusBoard:
    """One status line for every stage running: ``running: probe/d/m/sid 3/12 trial · extract/d/m 40/168 utt``.

    ``say`` prints a line (a stage started, finished or failed); on a terminal the status line is cleared first
    and redrawn after, so lines never mix with it. ``stream``: where the status goes (stderr).
    """

    def __init__(self, say: Callable[[str], None], stream: TextIO | None = None, log_interval: float = 60.0) -> None:
        self._say = say
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_interval = log_interval
        self.entries: dict[str, str] = {}
        self.lock = threading.RLock()
        self._drawn = False
        self._last_draw = 0.0
        self._last_log = time.monotonic()

    def say(self, line: str) -> None:
        """Print one line above the status line."""
        with self.lock:
            self._clear()
            self._say(line)
            self._draw(force=True)

    def start(self, key: str) -> None:
        with self.lock:
            self.entries[key] = ""

    def update(self, key: str, done: int, total: int, unit: str) -> None:
        with self.lock:
            self.entries[key] = f"{done}/{total} {unit}"
            self._draw()

    def finish(self, key: str) -> None:
        with self.lock:
            self.entries.pop(key, None)
            self._draw(force=True)

    def line(self) -> str:
        """The status line (empty when nothing runs)."""
        with self.lock:
            parts = [f"{k} {v}".strip() for k, v in self.entries.items()]
        return f"running: {' · '.join(parts)}" if parts else ""

    def _clear(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        text = self.line()
        if self.tty:
            if not force and now - self._last_draw < 0.2:
                return
            width = 200
            with contextlib.suppress(OSError, ValueError):
                import shutil

                width = shutil.get_terminal_size().columns - 1
            self.stream.write("\r\x1b[K" + text[:width])
            self.stream.flush()
            self._drawn, self._last_draw = bool(text), now
        elif text and now - self._last_log >= self.log_interval:  # logs: a plain line now and then, never redrawn
            self._say(text)
            self._last_log = now

    def close(self) -> None:
        """Remove the status line (the end of the run)."""
        with self.lock:
            self.entries.clear()
            self._clear()


class AudioProgress:
    """A bar over utterances whose postfix shows audio hours per second (extraction, any audio stage)."""

    def __init__(self, total_utterances: int, total_audio_seconds: float, enabled: bool = True, desc: str = "extract") -> None:
        self.bar = progress_bar(total_utterances, desc, "utt", enabled)
        self.total_audio = total_audio_seconds
        self.audio = 0.0
        self.t0 = time.perf_counter()

    def update(self, utterances: int, audio_seconds: float) -> None:
        """Advance by one finished unit's counts (e.g. a shard)."""
        self.audio += audio_seconds
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{self.audio / 3600 / elapsed:.4f} audio-h/s, {self.audio / 3600:.3f}/{self.total_audio / 3600:.3f} h", refresh=False)
        self.bar.update(utterances)

    def close(self) -> None:
        """Finish the bar."""
        self.bar.close()


_VERBOSE = False


def set_verbose(on: bool) -> None:
    """Show third-party banners (Ray Tune's experiment box, TensorBoard hints) for this process (``--verbose``)."""
    global _VERBOSE
    _VERBOSE = bool(on)


def verbose() -> bool:
    """Whether ``--verbose`` asked for third-party banners."""
    return _VERBOSE

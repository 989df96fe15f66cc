"""Progress bars for long work: live on a terminal, a line every 15 s in logs (`ray job submit`, CI)."""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr; when stderr is not a terminal, updates are throttled so logs stay short."""
    interactive = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=interactive,
                mininterval=0.1 if interactive else 15.0, **kwargs)


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

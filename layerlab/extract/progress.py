"""A tqdm progress bar over utterances that also shows audio-hours per second."""

from __future__ import annotations

import time

from layerlab.progress import progress_bar


class Progress:
    """Counts utterances (the bar) and audio seconds (the postfix: audio-h/s)."""

    def __init__(self, total_utterances: int, total_audio_seconds: float, enabled: bool = True) -> None:
        self.bar = progress_bar(total_utterances, "extract", "utt", enabled)
        self.total_audio = total_audio_seconds
        self.audio = 0.0
        self.t0 = time.perf_counter()

    def update(self, utterances: int, audio_seconds: float) -> None:
        """Advance by one finished shard's counts."""
        self.audio += audio_seconds
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{self.audio / 3600 / elapsed:.4f} audio-h/s, {self.audio / 3600:.3f}/{self.total_audio / 3600:.3f} h", refresh=False)
        self.bar.update(utterances)

    def close(self) -> None:
        """Finish the bar."""
        self.bar.close()

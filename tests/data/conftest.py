"""Fixtures for the importer tests: short speech clips (from a tiny synthetic corpus) to lay out like each dataset."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


class ImportAudio:
    """Short int16 clips cut from per-speaker voices (16 kHz), one voice per speaker index."""

    def __init__(self, voices: list[np.ndarray]) -> None:
        self.voices = voices

    @classmethod
    def from_synth(cls, root: str) -> "ImportAudio":
        """Voices from a synthetic corpus: each speaker's utterances concatenated, as int16."""
        from layerlab.data.shards import iter_utterances

        by_speaker: dict[str, list[np.ndarray]] = {}
        for u in iter_utterances(root):
            by_speaker.setdefault(u.speaker, []).append(u.wav)
        return cls([np.round(np.concatenate(w) * 32767).astype(np.int16) for _, w in sorted(by_speaker.items())])

    def clip(self, i: int, seconds: float = 1.0, sample_rate: int = 16_000) -> np.ndarray:
        """Clip ``i``: voice ``i % 5``, a window further into it for each round of five."""
        voice = self.voices[i % len(self.voices)]
        n = int(seconds * 16_000)
        start = (8_000 + (i // len(self.voices)) * n) % max(1, voice.shape[0] - n)
        wav = voice[start:start + n]
        if sample_rate != 16_000:
            import soxr

            wav = np.clip(soxr.resample(wav.astype(np.float32), 16_000, sample_rate), -32768, 32767).astype(np.int16)
        return wav

    def encoded(self, i: int, seconds: float = 1.0, sample_rate: int = 16_000, fmt: str = "WAV") -> bytes:
        """Clip ``i`` encoded as 16-bit ``fmt`` (WAV or FLAC)."""
        buf = io.BytesIO()
        sf.write(buf, self.clip(i, seconds, sample_rate), sample_rate, format=fmt, subtype="PCM_16")
        return buf.getvalue()

    def write(self, path: Path, i: int, seconds: float = 1.0, sample_rate: int = 16_000) -> Path:
        """Write clip ``i`` to ``path`` (format from the suffix), creating parent folders."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = "FLAC" if path.suffix == ".flac" else "WAV"
        path.write_bytes(self.encoded(i, seconds, sample_rate, fmt))
        return path


def import_corrupt(path: Path) -> Path:
    """Write bytes that no decoder accepts (a RIFF header followed by garbage)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    return path


def import_empty(path: Path) -> Path:
    """Write a 0-byte file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


@pytest.fixture(scope="session")
def import_audio(tmp_path_factory: pytest.TempPathFactory) -> ImportAudio:
    """Clip factory (WAV/FLAC at any sample rate) over a tiny synthetic corpus: 5 voices x 3 sentences."""
    from layerlab.data.synth import SynthConfig, build_synth_corpus

    root = str(tmp_path_factory.mktemp("import_synth"))
    config = SynthConfig(
        speakers=5, read_per_speaker=3, keyword_repeats=0, unknown_per_speaker=0, silence_per_speaker=0,
        commands_per_speaker=0, style_sentences_per_speaker=0, workers=1, noise={"prob": 0.0}, reverb={"prob": 0.0},
    )
    build_synth_corpus(root, config, progress=False)
    return ImportAudio.from_synth(root)


@pytest.fixture()
def import_bad_files():
    """Writers for a corrupt file and an empty file: ``(corrupt, empty)``."""
    return import_corrupt, import_empty

"""Crop augmentation: additive noise (a user's MUSAN-style folder, else coloured noise) or reverberation
(a user's RIR folder, else synthetic room responses), reusing the corpus builder's generators."""

from __future__ import annotations

import numpy as np

from layerlab import storage
from layerlab.data.synth.augment import (
    coloured_noise,
    reverberate,
    synthetic_impulse_response,
)
from layerlab.train.config import AugmentConfig

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
SAMPLE_RATE = 16000


def _load_folder(url: str | None, what: str) -> list[np.ndarray]:
    """Every audio file under ``url`` as 16 kHz mono float32 (empty list for None)."""
    if not url:
        return []
    from layerlab.data.audio import BadAudio, normalise

    files = [f for f in storage.list_files(url) if f.lower().endswith(AUDIO_SUFFIXES)]
    if not files:
        raise ValueError(f"{what} folder {url}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    out = []
    for f in files:
        try:
            out.append(normalise(storage.read_bytes(f)).wav)
        except BadAudio as exc:
            raise ValueError(f"{what} file {f}: unusable audio ({exc})") from exc
    return out


def active_power(wav: np.ndarray) -> float:
    """Mean power of the non-silent part of ``wav`` (leading/trailing pauses ignored)."""
    active = np.abs(wav) > 0.02 * (float(np.abs(wav).max()) or 1.0)
    return float(np.mean(wav[active] ** 2)) if active.any() else float(np.mean(wav ** 2))


class Augmenter:
    """Applies the configured degradation to one crop at a time (draws from the caller's Generator)."""

    def __init__(self, config: AugmentConfig):
        self.config = config
        self.noises = _load_folder(config.noise_dir, "noise")
        self.rirs = [r / (np.sqrt(np.sum(r ** 2)) or 1.0) for r in _load_folder(config.rir_dir, "RIR")]

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noise or reverb with probability ``prob``; the crop keeps its length."""
        c = self.config
        if rng.random() >= c.prob:
            return wav
        if rng.random() < c.reverb_prob:
            if self.rirs:
                ir = self.rirs[int(rng.integers(len(self.rirs)))]
            else:
                ir = synthetic_impulse_response(SAMPLE_RATE, float(rng.uniform(*c.rt60_s)), rng)
            out = reverberate(wav, ir)
        else:
            out = wav + self._noise(wav.shape[0], rng) * np.sqrt(active_power(wav) / 10 ** (float(rng.uniform(*c.snr_db)) / 10))
        peak = float(np.abs(out).max())
        return (out / peak * 0.9 if peak > 1.0 else out).astype(np.float32)

    def _noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Unit-power noise of ``n`` samples: a random stretch of a user file, else coloured noise."""
        if not self.noises:
            return coloured_noise(n, str(rng.choice(self.config.colours)), rng)
        src = self.noises[int(rng.integers(len(self.noises)))]
        if src.shape[0] < n:
            src = np.tile(src, n // max(1, src.shape[0]) + 1)
        start = int(rng.integers(0, src.shape[0] - n + 1))
        seg = src[start:start + n].astype(np.float64)
        return (seg / (np.sqrt(np.mean(seg ** 2)) or 1.0)).astype(np.float32)

"""Degradations that keep the synthetic tasks from being trivially clean: noise, reverb, level.

All draws come from a caller-supplied numpy Generator (seeded per utterance), so a corpus is
reproducible. Reverb output keeps the input length, so phone alignments stay valid.
"""

from __future__ import annotations

import numpy as np
from layerlab.data.synth.config import NoiseConfig, ReverbConfig


def coloured_noise(num_samples: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with a white (flat), pink (1/f) or brown (1/f^2) power spectrum."""
    white = rng.standard_normal(num_samples)
    if colour != "white":
        spectrum = np.fft.rfft(white)
        freqs = np.arange(spectrum.shape[0], dtype=np.float64)
        freqs[0] = 1.0
        exponent = {"pink": 0.5, "brown": 1.0}.get(colour)
        if exponent is None:
            raise ValueError(f"unknown noise colour {colour!r}; use white, pink or brown")
        spectrum /= freqs**exponent
        spectrum[0] = 0.0
        white = np.fft.irfft(spectrum, n=num_samples)
    rms = float(np.sqrt(np.mean(white**2))) or 1.0
    return (white / rms).astype(np.float32)


def add_noise(wav: np.ndarray, snr_db: float, colour: str, rng: np.random.Generator) -> np.ndarray:
    """``wav`` plus coloured noise at ``snr_db`` relative to the signal's active-speech power."""
    active = np.abs(wav) > 0.02 * (np.abs(wav).max() or 1.0)  # ignore leading/trailing silence
    power = float(np.mean(wav[active] ** 2)) if active.any() else float(np.mean(wav**2))
    noise = coloured_noise(wav.shape[0], colour, rng) * np.sqrt(power / 10 ** (snr_db / 10))
    return (wav + noise).astype(np.float32)


def synthetic_impulse_response(sample_rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A room-like impulse response: direct path, then Gaussian noise under an exp(-6.9 t / RT60) decay."""
    n = max(2, int(rt60 * sample_rate))
    t = np.arange(n) / sample_rate
    envelope = np.exp(-6.9078 * t / rt60)  # -60 dB at t = RT60
    ir = rng.standard_normal(n) * envelope * 0.3
    predelay = int(rng.integers(int(0.002 * sample_rate), int(0.01 * sample_rate) + 1))
    ir[:predelay] = 0.0
    ir[0] = 1.0
    return (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)


def reverberate(wav: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Convolve with ``ir``, keep the original length (the tail beyond the last sample is cut)."""
    n = wav.shape[0] + ir.shape[0] - 1
    size = 1 << (n - 1).bit_length()  # FFT length: next power of two
    out = np.fft.irfft(np.fft.rfft(wav, size) * np.fft.rfft(ir, size), size)
    return out[: wav.shape[0]].astype(np.float32)


def noise_clip(num_samples: int, config: NoiseConfig, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A noise-only clip (KS ``_silence_``) and a description of it."""
    colour = str(rng.choice(config.colours))
    rms = float(rng.uniform(*config.silence_rms))
    return coloured_noise(num_samples, colour, rng) * rms, f"noise {colour} rms {rms:.4f}"


def degrade(wav: np.ndarray, sample_rate: int, noise: NoiseConfig, reverb: ReverbConfig, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Reverb and/or noise (each with its configured probability), then a random peak level.

    Returns the new waveform and a short description of what was applied.
    """
    applied = []
    # Draw every random choice in a fixed order so that toggling one option cannot shift the others.
    use_reverb = rng.random() < reverb.prob
    rt60 = float(rng.uniform(*reverb.rt60_s))
    use_noise = rng.random() < noise.prob
    snr = float(rng.uniform(*noise.snr_db))
    colour = str(rng.choice(noise.colours))
    peak = float(rng.uniform(0.3, 0.9))
    noise_rng = np.random.default_rng(rng.integers(2**63))
    ir_rng = np.random.default_rng(rng.integers(2**63))
    out = wav.astype(np.float32, copy=True)
    if use_reverb:
        out = reverberate(out, synthetic_impulse_response(sample_rate, rt60, ir_rng))
        applied.append(f"reverb rt60 {rt60:.2f}s")
    if use_noise:
        out = add_noise(out, snr, colour, noise_rng)
        applied.append(f"noise {colour} {snr:.1f}dB")
    top = float(np.abs(out).max())
    if top > 0:
        out = (out * (peak / top)).astype(np.float32)
    return out, ", ".join(applied) or "clean"

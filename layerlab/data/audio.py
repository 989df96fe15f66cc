"""Decode, validate and normalise audio (16 kHz mono float32) and encode it as FLAC bytes."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

TARGET_SAMPLE_RATE = 16_000


class BadAudio(ValueError):
    """Audio that cannot enter a shard; the message is the quarantine reason."""


@dataclass(frozen=True)
class AudioLimits:
    """Bounds on acceptable input (seconds after resampling)."""

    min_seconds: float = 0.02
    max_seconds: float = 60.0


@dataclass(frozen=True)
class NormalisedAudio:
    """A validated mono 16 kHz waveform and what was done to get it."""

    wav: np.ndarray  # float32 [S] in [-1, 1]
    sample_rate: int
    orig_sample_rate: int
    orig_channels: int
    orig_num_samples: int
    gain: float  # applied scale (1.0 unless the input peaked above full scale)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode encoded audio bytes to ``([S, C] float32, sample_rate)``; BadAudio if undecodable."""
    if not data:
        raise BadAudio("empty file (0 bytes)")
    try:
        wav, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises LibsndfileError / RuntimeError / TypeError
        detail = str(exc).split(">: ", 1)[-1]  # drop libsndfile's "<BytesIO object at ...>" prefix
        raise BadAudio(f"undecodable audio: {detail}") from exc
    return wav, int(sr)


def resample(wav: np.ndarray, orig_sr: int, target_sr: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling of a mono float32 waveform (soxr, high quality, deterministic)."""
    if orig_sr == target_sr:
        return wav
    import soxr

    return soxr.resample(wav, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def normalise(audio: np.ndarray | bytes, sample_rate: int = 0, limits: AudioLimits = AudioLimits()) -> NormalisedAudio:
    """Validate and normalise to mono 16 kHz float32; raise BadAudio with the reason otherwise."""
    if isinstance(audio, (bytes, bytearray, memoryview)):
        wav2d, sample_rate = decode(bytes(audio))
    else:
        arr = np.asarray(audio)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise BadAudio(f"audio array must be [samples] or [samples, channels], got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number):
            raise BadAudio(f"audio array has non-numeric dtype {arr.dtype}")
        if np.issubdtype(arr.dtype, np.integer):
            arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
        wav2d = arr.astype(np.float32, copy=False)
        if sample_rate <= 0:
            raise BadAudio(f"invalid sample rate {sample_rate}")
    orig_channels = int(wav2d.shape[1])
    if wav2d.shape[0] == 0 or orig_channels == 0:
        raise BadAudio("empty audio (0 samples)")
    if not np.isfinite(wav2d).all():
        bad = int((~np.isfinite(wav2d)).sum())
        raise BadAudio(f"non-finite samples (NaN/Inf): {bad} of {wav2d.size}")
    seconds = wav2d.shape[0] / sample_rate
    if seconds > limits.max_seconds:
        raise BadAudio(f"too long: {seconds:.2f} s > max {limits.max_seconds:g} s")
    mono = wav2d.mean(axis=1) if orig_channels > 1 else wav2d[:, 0]
    mono = resample(np.ascontiguousarray(mono, dtype=np.float32), sample_rate)
    if mono.shape[0] / TARGET_SAMPLE_RATE < limits.min_seconds:
        raise BadAudio(f"too short: {mono.shape[0] / TARGET_SAMPLE_RATE:.3f} s < min {limits.min_seconds:g} s")
    if not np.any(mono):
        raise BadAudio("digital silence (all samples are zero)")
    peak = float(np.abs(mono).max())
    gain = 1.0
    if peak > 1.0:  # FLAC is fixed-point: scale down rather than clip
        gain = 0.999 / peak
        mono = (mono * gain).astype(np.float32)
    return NormalisedAudio(mono, TARGET_SAMPLE_RATE, int(sample_rate), orig_channels, int(wav2d.shape[0]), gain)


def encode_flac(wav: np.ndarray, sample_rate: int = TARGET_SAMPLE_RATE) -> bytes:
    """Encode a mono float waveform in [-1, 1] as 16-bit FLAC bytes (deterministic)."""
    buf = io.BytesIO()
    sf.write(buf, np.asarray(wav, dtype=np.float32), sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def decode_flac(data: bytes) -> np.ndarray:
    """Decode FLAC bytes from a shard row to a mono float32 waveform."""
    wav, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return wav

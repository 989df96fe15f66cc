"""Reading audio files for a model, with a clear error when the file's sample rate is not the model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from layerlab.models.errors import AudioInputError


def read_audio(path: str | Path, expected_sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 samples of ``path``; raises AudioInputError naming the file on a rate mismatch."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError
        raise AudioInputError(f"{path}: cannot read audio ({exc})") from exc
    if rate != expected_sample_rate:
        raise AudioInputError(
            f"{path}: sample rate {rate} Hz, but the model expects {expected_sample_rate} Hz; resample first"
        )
    return data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]

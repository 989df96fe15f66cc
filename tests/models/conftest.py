"""Fixtures for model-zoo tests: tiny checkpoints in every real format and a few real utterances."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="session")
def real_wavs(librispeech_excerpt: Path) -> list[np.ndarray]:
    """Three real utterances of different speakers, cropped to 3.0 s, 2.2 s and 1.5 s (distinct lengths)."""
    from layerlab.models.audio import read_audio

    speakers = sorted(p for p in librispeech_excerpt.iterdir() if p.is_dir())[:3]
    crops = [48000, 35200, 24000]
    out = []
    for spk, n in zip(speakers, crops):
        wav = read_audio(sorted(spk.glob("*.flac"))[0], 16000)
        out.append(wav[16000 : 16000 + n].copy())  # skip the leading second (often silence)
    return out


@pytest.fixture(scope="session")
def real_batch(real_wavs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    from layerlab.models.batching import pad_batch

    return pad_batch(real_wavs)


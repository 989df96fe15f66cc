"""A small audio-shard dataset of synthetic speech for extraction and CKA tests (ShardWriter-written).

The speech comes from the project's espeak-ng corpus (5 voices, built once per test process), cut into
utterances of random length; chosen rows are made too short for the model or given NaN samples.
"""

from __future__ import annotations

import functools
import tempfile

import numpy as np

from layerlab.data.records import AudioRecord
from layerlab.data.shards import ShardWriter

SR = 16000


@functools.lru_cache(maxsize=1)
def synth_voices() -> tuple[np.ndarray, ...]:
    """Per-speaker concatenated speech of a tiny clean synthetic corpus (5 voices x 3 sentences, 16 kHz)."""
    from layerlab.data.shards import iter_utterances
    from layerlab.data.synth import SynthConfig, build_synth_corpus

    root = tempfile.mkdtemp(prefix="layerlab-test-voices-")
    config = SynthConfig(
        speakers=5, read_per_speaker=3, keyword_repeats=0, unknown_per_speaker=0, silence_per_speaker=0,
        commands_per_speaker=0, style_sentences_per_speaker=0, workers=1, noise={"prob": 0.0}, reverb={"prob": 0.0},
    )
    build_synth_corpus(root, config, progress=False)
    by_speaker: dict[str, list[np.ndarray]] = {}
    for u in iter_utterances(root):
        by_speaker.setdefault(u.speaker, []).append(u.wav)
    return tuple(np.concatenate(w) for _, w in sorted(by_speaker.items()))


def _voice(rng: np.random.Generator, seconds: float, speaker: int, crop: int | None = None) -> np.ndarray:
    """``seconds`` of speaker ``speaker``'s synthetic speech from a random offset (speech, not a pause).

    With ``crop``, only the first ``crop`` samples are kept, and they are chosen to be voiced.
    """
    voice = synth_voices()[speaker % 5]
    n = int(seconds * SR)
    for _ in range(100):
        start = int(rng.integers(0, max(1, voice.shape[0] - n)))
        wav = voice[start:start + n].astype(np.float32)
        if np.sqrt(np.mean(wav[:crop] ** 2)) > 0.02:
            return wav[:crop]
    raise AssertionError("no voiced window found in the synthetic voices")


def build_corpus(root: str, utterances: int = 18, seed: int = 0, short_ids: tuple[int, ...] = (4,), nan_ids: tuple[int, ...] = (7,), max_shard_bytes: int = 120_000) -> list[str]:
    """Write ``utterances`` rows into shards of about ``max_shard_bytes``; returns the ids expected in the cache.

    ``short_ids`` get 350 samples: accepted at ingest (>= 20 ms) but rejected by the model (< 400).
    ``nan_ids`` contain NaN samples: quarantined at ingest.
    """
    rng = np.random.default_rng(seed)
    lengths = rng.uniform(0.4, 1.6, size=utterances)
    kept = []
    # ~3 shards of 3-8 rows for the default 18 utterances (shards roll by bytes)
    with ShardWriter(root, "extract-test", max_shard_bytes=max_shard_bytes, row_group_rows=4) as w:
        for i in range(utterances):
            wav = _voice(rng, float(lengths[i]), i % 3, crop=350 if i in short_ids else None)
            if i in nan_ids:
                wav = wav.copy()
                wav[10] = np.nan
            uid = f"utt{i:03d}"
            ok = w.add(AudioRecord(id=uid, audio=wav, sample_rate=SR, speaker=f"spk{i % 3}", source=f"synthetic:{i}",
                                   labels={"sid": f"spk{i % 3}"}, splits={"sid": "train" if i % 4 else "test"}))
            if ok and i not in short_ids:
                kept.append(uid)
    return kept

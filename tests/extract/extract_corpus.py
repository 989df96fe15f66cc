"""A small real audio-shard dataset for extraction tests, written with the project's ShardWriter."""

from __future__ import annotations

import numpy as np

from layerlab.data.records import AudioRecord
from layerlab.data.shards import ShardWriter

SR = 16000


def _voice(rng: np.random.Generator, seconds: float, f0: float) -> np.ndarray:
    """A harmonic tone with vibrato plus noise: speech-like enough to give non-trivial activations."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / SR
    wav = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2 + 0.02 * rng.standard_normal(t.size)
    return wav.astype(np.float32)


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
            wav = _voice(rng, float(lengths[i]), 100 + 15 * (i % 5))
            if i in short_ids:
                wav = wav[:350]
            if i in nan_ids:
                wav = wav.copy()
                wav[10] = np.nan
            uid = f"utt{i:03d}"
            ok = w.add(AudioRecord(id=uid, audio=wav, sample_rate=SR, speaker=f"spk{i % 3}", source=f"synthetic:{i}",
                                   labels={"sid": f"spk{i % 3}"}, splits={"sid": "train" if i % 4 else "test"}))
            if ok and i not in short_ids:
                kept.append(uid)
    return kept

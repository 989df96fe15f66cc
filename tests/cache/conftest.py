"""Fixtures for the cache reader: a small aligned corpus and real caches extracted from it without Ray."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pytest

from helpers.cache_builder import build_cache_inline
from helpers.speech_corpus import SR, _voice

warnings.filterwarnings("ignore", category=FutureWarning)

PHONES = ("a", "b", "k", "s")


def build_aligned_corpus(root: str, utterances: int = 12, seed: int = 3) -> list[str]:
    """Rows with transcripts, tiled phone alignments and an asv_trials side table, in 3+ shards."""
    from layerlab.data.records import AudioRecord, PhoneSpan
    from layerlab.data.shards import ShardWriter

    rng = np.random.default_rng(seed)
    ids = []
    with ShardWriter(root, "cache-test", max_shard_bytes=60_000, row_group_rows=3) as w:
        for i in range(utterances):
            wav = _voice(rng, float(rng.uniform(0.5, 1.2)), i % 3)
            edges = np.unique(np.r_[0, np.sort(rng.integers(200, len(wav) - 200, 5)), len(wav)])
            spans = [PhoneSpan(PHONES[k % 4], int(a), int(b)) for k, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]
            uid = f"u{i:02d}"
            w.add(AudioRecord(id=uid, audio=wav, sample_rate=SR, speaker=f"spk{i % 3}", source=f"synthetic:{i}", labels={"sid": f"spk{i % 3}"},
                              splits={"sid": "test" if i % 4 == 0 else "train"}, transcript=f"word {i}", alignment=spans))
            ids.append(uid)
        w.add_table("asv_trials", pa.table({"enrol": ["u00", "u01"], "test": ["u03", "u02"], "label": pa.array([1, 0], pa.int8())}))
    return ids


@pytest.fixture(scope="session")
def aligned_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    """(dataset root, ids)."""
    root = str(tmp_path_factory.mktemp("cache_corpus") / "data")
    return root, build_aligned_corpus(root)


@pytest.fixture(scope="session")
def fbank_cache(aligned_corpus, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A complete two-tier FBANK cache (window convention, 100 Hz)."""
    from layerlab.models import load

    return build_cache_inline(load("fbank", "cpu"), aligned_corpus[0], str(tmp_path_factory.mktemp("fbank_cache") / "c"))


@pytest.fixture(scope="session")
def wavlm_cache(aligned_corpus, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A complete two-tier cache of a tiny s3prl WavLM (stride convention, 50 Hz, 3 layers)."""
    from layerlab.models import load, tiny

    path = tiny.build_s3prl_wavlm(tmp_path_factory.mktemp("cache_models") / "wavlm.pt", seed=5)
    return build_cache_inline(load(f"s3prl:wavlm_local:{path}", "cpu"), aligned_corpus[0], str(tmp_path_factory.mktemp("wavlm_cache") / "c"), mode="unbatched")


@pytest.fixture(scope="session")
def fbank_cache_of_fewer_utterances(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A complete FBANK cache of the aligned corpus's first 8 utterances (same ids, fewer of them): it only partly overlaps ``fbank_cache``."""
    from layerlab.models import load

    root = str(tmp_path_factory.mktemp("short_corpus") / "data")
    build_aligned_corpus(root, utterances=8)
    return build_cache_inline(load("fbank", "cpu"), root, str(tmp_path_factory.mktemp("short_cache") / "c"))

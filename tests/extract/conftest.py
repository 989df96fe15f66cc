"""Fixtures for extraction tests: a tiny real WavLM checkpoint and a small real audio-shard corpus."""

from __future__ import annotations

import warnings

import pytest

from helpers.speech_corpus import build_corpus

warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(scope="session")
def wavlm_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny s3prl-format WavLM (GroupNorm extractor: padding-sensitive, like WavLM Base)."""
    from layerlab.models import tiny

    path = tiny.build_s3prl_wavlm(tmp_path_factory.mktemp("extract_models") / "wavlm.pt", seed=5)
    return f"s3prl:wavlm_local:{path}"


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    """(dataset root, ids expected in a cache): 18 utterances in 3 shards, one NaN (ingest) and one too short (model)."""
    root = str(tmp_path_factory.mktemp("extract_corpus") / "data")
    return root, build_corpus(root)


@pytest.fixture(scope="session")
def big_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    """(root, expected ids): 24 utterances in 8+ small shards, for pool and fault tests."""
    root = str(tmp_path_factory.mktemp("extract_big") / "data")
    return root, build_corpus(root, utterances=24, seed=1, short_ids=(), nan_ids=(), max_shard_bytes=50_000)

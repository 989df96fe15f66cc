"""Fixtures for the profile tests: an aligned five-speaker corpus with speaker, keyword and phone labels, and real caches of it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from helpers.cache_builder import build_cache_inline
from helpers.speech_corpus import SR, _voice

warnings.filterwarnings("ignore", category=FutureWarning)

PHONES = ("a", "b", "k", "s", "sil")
WORDS = ("yes", "no", "up")
SPEAKERS = 5
PER_SPEAKER = 6


def build_profile_corpus(root: str, seed: int = 11) -> list[str]:
    """5 speakers x 6 utterances in several shards: tiled phone alignments, a keyword label, SID/PR/KS splits.

    SID holds out utterances of every speaker (4 train, 1 dev, 1 test each); PR and KS hold out speakers
    (3 train, spk3 dev, spk4 test).
    """
    from layerlab.data.records import AudioRecord, PhoneSpan
    from layerlab.data.shards import ShardWriter
    from layerlab.data.tasks import TaskSpec

    rng = np.random.default_rng(seed)
    tasks = {
        "sid": TaskSpec(name="sid", kind="utterance_classification", label_keys=["sid"], split_key="sid"),
        "pr": TaskSpec(name="pr", kind="frame_sequence", label_keys=["pr"], split_key="pr", alignment=True),
        "ks": TaskSpec(name="ks", kind="utterance_classification", label_keys=["ks"], split_key="ks"),
    }
    ids = []
    with ShardWriter(root, "profile-test", max_shard_bytes=90_000, row_group_rows=4, tasks=tasks) as w:
        for i in range(SPEAKERS * PER_SPEAKER):
            spk, k = i % SPEAKERS, i // SPEAKERS
            wav = _voice(rng, float(rng.uniform(0.6, 1.1)), spk)
            edges = np.unique(np.r_[0, np.sort(rng.integers(300, len(wav) - 300, 6)), len(wav)])
            spans = [PhoneSpan(PHONES[int(rng.integers(0, len(PHONES)))], int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
            uid = f"u{i:02d}"
            content = "train" if spk < 3 else "dev" if spk == 3 else "test"
            sid = "train" if k < 4 else "dev" if k == 4 else "test"
            w.add(AudioRecord(id=uid, audio=wav, sample_rate=SR, speaker=f"spk{spk}", source=f"synthetic:{i}",
                              labels={"sid": f"spk{spk}", "pr": " ".join(s.phone for s in spans), "ks": WORDS[int(rng.integers(0, 3))]},
                              splits={"sid": sid, "pr": content, "ks": content}, alignment=spans))
            ids.append(uid)
    return ids


@pytest.fixture(scope="session")
def profile_corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("profile_corpus") / "data")
    build_profile_corpus(root)
    return root


@pytest.fixture(scope="session")
def wavlm_profile_cache(profile_corpus: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Both tiers of a tiny s3prl WavLM (stride convention, 50 Hz)."""
    from layerlab.models import load, tiny

    path = tiny.build_s3prl_wavlm(tmp_path_factory.mktemp("profile_models") / "wavlm.pt", seed=5)
    return build_cache_inline(load(f"s3prl:wavlm_local:{path}", "cpu"), profile_corpus, str(tmp_path_factory.mktemp("profile_wavlm") / "c"),
                              mode="unbatched")


@pytest.fixture(scope="session")
def fbank_pooled_cache(profile_corpus: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The FBANK baseline's pooled tier only (no frames: frame references are skipped)."""
    from layerlab.models import load

    return build_cache_inline(load("fbank", "cpu"), profile_corpus, str(tmp_path_factory.mktemp("profile_fbank") / "c"), tier="pooled")

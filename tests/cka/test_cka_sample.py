"""CKA on a declared sample: only its utterances enter, the half-vs-all convergence check is reported, speaker folds group it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.cache_builder import build_cache_inline
from helpers.speech_corpus import build_corpus

from layerlab.cka.pipeline import CKAJob, run_cka
from layerlab.data.selection import cka_sample, half_sample, speaker_folds


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str], list[str]]:
    """(frames + pooled FBANK cache, its ids, their speakers): 18 utterances of 3 speakers in a few shards, built without Ray."""
    from layerlab.cache import open_cache
    from layerlab.models import load

    base = tmp_path_factory.mktemp("cka_sample")
    build_corpus(str(base / "data"), utterances=18, short_ids=(), nan_ids=(), max_shard_bytes=60_000)
    out = build_cache_inline(load("fbank", device="cpu"), str(base / "data"), str(base / "cache"))
    rows = open_cache(out).source_rows()
    return out, list(rows.index), [str(s) for s in rows["speaker"]]


def test_only_the_sample_enters_and_half_vs_all_is_reported(cache, tmp_path) -> None:
    url, ids, speakers = cache
    sample = cka_sample(ids, speakers, 12, seed=0)
    half = half_sample(sample, [speakers[ids.index(u)] for u in sample], 0)
    job = CKAJob(url, level="frame", estimator="debiased", ids=frozenset(sample), half=frozenset(half))
    summary = run_cka(job, str(tmp_path / "all"))
    assert summary["n_utterances"] == 12 and summary["sample"] == {"utterances": 12, "half": 6}
    check = summary["convergence"]
    assert check["half_utterances"] == 6 and check["utterances"] == 12 and check["max_abs_diff"] >= check["mean_abs_diff"] >= 0
    # the half's estimate is CKA of exactly those utterances: run it alone and compare
    alone = run_cka(CKAJob(url, level="frame", estimator="debiased", ids=frozenset(half)), str(tmp_path / "half"))
    full = run_cka(CKAJob(url, level="frame", estimator="debiased", ids=frozenset(sample)), str(tmp_path / "full"))
    from layerlab.cka.tables import read_matrix

    diff = np.abs(read_matrix(full["tables"][0])[0] - read_matrix(alone["tables"][0])[0])
    assert check["max_abs_diff"] == pytest.approx(float(diff.max()), abs=1e-9)
    assert json.loads((tmp_path / "all" / "summary.json").read_text())["convergence"]["max_abs_diff"] == check["max_abs_diff"]


def test_speaker_folds_are_the_jackknife_groups(cache, tmp_path) -> None:
    url, ids, speakers = cache
    folds = speaker_folds(speakers, 2, seed=0)
    summary = run_cka(CKAJob(url, level="utterance", estimator="biased", group_by="speaker", speaker_groups=folds), str(tmp_path / "f"),
                      bootstrap=10)
    assert summary["ci"]["n_groups"] == 2 and summary["ci"]["groups"] == ["fold00", "fold01"]

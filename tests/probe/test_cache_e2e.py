"""Probes on real activation caches (synthetic espeak-ng speech -> `extract` on local Ray -> `run_probe`)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from layerlab.probe.config import ProbeConfig


def _extract(model: str, data: str, out: str, tier: str = "both") -> str:
    from layerlab.extract.config import ExtractConfig
    from layerlab.extract.pipeline import extract

    summary = extract(model, data, out, ExtractConfig(tier=tier, progress=False))
    assert summary.ok
    return out


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 6-speaker synthetic corpus with SID/ASV/PR labels only (small: fast tests)."""
    from layerlab.data.synth import SynthConfig, build_synth_corpus

    root = str(tmp_path_factory.mktemp("probe_corpus") / "synth")
    cfg = SynthConfig(speakers=6, read_per_speaker=6, keyword_repeats=0, unknown_per_speaker=0, silence_per_speaker=0,
                      commands_per_speaker=0, style_sentences_per_speaker=0, workers=1, noise={"prob": 0.0}, reverb={"prob": 0.0},
                      content_dev_fraction=0.2, content_test_fraction=0.2, sid_dev_fraction=0.2, sid_test_fraction=0.2)
    build_synth_corpus(root, cfg, progress=False)
    return root


@pytest.fixture(scope="session")
def fbank_cache(ray_session, tiny_corpus: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The FBANK baseline's cache (pooled + frames) of the tiny corpus."""
    return _extract("fbank", tiny_corpus, str(tmp_path_factory.mktemp("probe_cache") / "fbank"))


def test_asha_sweep_on_cache_writes_results(fbank_cache: str, tmp_path: Path) -> None:
    from layerlab.probe import run_probe

    cfg = ProbeConfig(max_epochs=6, patience=6, batch_size=8, cpus_per_trial=0.5, asha_grace_period=2, intervals=True,
                      search={"lr": (1e-3, 3e-2), "weight_decay": [0.0], "hidden": [32, 64]})
    out = tmp_path / "sid"
    summary = run_probe(fbank_cache, "sid", str(out), layers="both", tune_samples=4, scheduler="asha", config=cfg)
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert set(metrics.columns) >= {"model", "task", "probe", "split", "metric", "value", "ci_low", "ci_high", "n", "higher_is_better"}
    test = metrics[(metrics.split == "test") & (metrics.metric == "accuracy")]
    assert set(test.probe) == {"weighted_sum", "fbank"} and (test.model == "fbank").all()
    row = test[test.probe == "weighted_sum"].iloc[0]
    assert row.ci_low <= row.value <= row.ci_high and row.n > 0 and row.higher_is_better
    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) == 4 and trials.lr.nunique() == 4
    assert set(trials.stopped_by) <= {"patience", "max_epochs", "scheduler"} and (trials.best_epoch.between(1, 6)).all()
    weights = pd.read_parquet(out / "layer_weights.parquet")
    assert list(weights.layer) == ["fbank"] and weights.weight.iloc[0] == pytest.approx(1.0)
    assert weights.contribution.iloc[0] == pytest.approx(1.0) and weights.normalized_weight.iloc[0] == pytest.approx(1.0)
    assert (out / "figures" / "layer_weights.png").stat().st_size > 0 and (out / "figures" / "layer_profile.png").stat().st_size > 0
    assert (out / "head.pt").is_file()
    doc = json.loads((out / "summary.json").read_text())
    assert doc["task"] == "sid" and doc["task_info"]["splits"]["derived"] is False and doc["best"]["probe"] == "weighted_sum"
    assert set(doc["convergence"]) == {"weighted_sum", "fbank"}
    conv = doc["convergence"]["weighted_sum"]
    assert conv["stopped_by"] in ("patience", "max_epochs") and conv["max_epochs"] == 6 and 1 <= conv["best_epoch"] <= conv["epochs"] <= 6
    assert doc["test_speakers"] == doc["speakers"]["test"] and len(doc["test_speakers"]) >= 2
    assert doc["speakers"]["train"] == sorted(doc["speakers"]["train"])
    assert summary["test"]["weighted_sum/accuracy"] == pytest.approx(row.value)


def test_bad_input_on_a_real_cache(fbank_cache: str, tmp_path: Path, tiny_corpus: str) -> None:
    from layerlab.probe import ProbeInputError, run_probe

    with pytest.raises(ProbeInputError, match=r"fbank: task 'ks': no utterance carries the label\(s\) ks"):
        run_probe(fbank_cache, "ks", str(tmp_path / "ks"))
    pooled_only = _extract("fbank", tiny_corpus, str(tmp_path / "pooled"), tier="pooled")
    with pytest.raises(ProbeInputError, match=r"pooled: task 'pr': needs the frames tier"):
        run_probe(pooled_only, "pr", str(tmp_path / "pr"))
    with pytest.raises(ValueError, match="unknown probe task 'nope'"):
        run_probe(fbank_cache, "nope", str(tmp_path / "x"))


def test_held_frames_give_the_same_training_and_skip_decoding(fbank_cache: str) -> None:
    """With ``frames_memory_mb`` the second epoch reads memory, not the cache, and training is bit-identical."""
    from layerlab.probe.source import open_source
    from layerlab.probe.tasks import get_task
    from layerlab.probe.train import fit

    task = get_task("pr")
    histories, reads = [], []
    for hold in (0, 64):
        source = open_source(fbank_cache)
        calls = []
        inner = source.iter_frames
        source.iter_frames = lambda layers, ids=None, _i=inner: calls.append(1) or _i(layers, ids)  # type: ignore[method-assign]
        cfg = ProbeConfig(max_epochs=3, patience=3, batch_size=4, frames_memory_mb=hold, intervals=False)
        bound = task.bind(source, task, cfg, source.layer_names)
        result = fit(bound, {"lr": 3e-3, "hidden": 32}, cfg)
        histories.append([round(h["train_loss"], 6) for h in result.history])
        reads.append(len(calls))
    assert histories[0] == histories[1]
    assert reads[0] == 6 and reads[1] == 2  # streamed: train + dev per epoch; held: one decode per split
    cfg_tiny = ProbeConfig(frames_memory_mb=1e-6)  # a budget nothing fits in keeps streaming
    source = open_source(fbank_cache)
    bound = task.bind(source, task, cfg_tiny, source.layer_names)
    list(bound.train_batches(0, 0))
    assert source._held_frames.nbytes == 0 and not source._held_frames.frames  # type: ignore[attr-defined]

"""Acceptance (slow): the real pretrained GE2E against the FBANK baseline on synthetic speech and on real LibriSpeech."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_cache_e2e import _extract
from typer.testing import CliRunner

from layerlab.probe.config import ProbeConfig

POOLED = {"max_epochs": 80, "patience": 12, "batch_size": 16, "lr": 2e-3, "cpus_per_trial": 1, "intervals": True}
FRAMES = {"max_epochs": 10, "patience": 4, "batch_size": 16, "lr": 2e-3, "cpus_per_trial": 1, "intervals": True,
          "asv": {"proj": 128, "tdnn": 128, "agg": 384, "embed": 128, "crop_seconds": 3.0}}


@pytest.fixture(scope="module")
def synth_caches(ray_session, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """ge2e and fbank caches (both tiers) of a 12-speaker synthetic corpus."""
    from layerlab.data.synth import SynthConfig, build_synth_corpus

    root = tmp_path_factory.mktemp("accept")
    build_synth_corpus(str(root / "synth"), SynthConfig(speakers=12, workers=1), progress=False)
    return {m: _extract(m, str(root / "synth"), str(root / m)) for m in ("ge2e", "fbank")}


def _test_value(out: Path, probe: str, metric: str) -> float:
    m = pd.read_parquet(out / "metrics.parquet")
    return float(m[(m.split == "test") & (m.probe == probe) & (m.metric == metric)].value.iloc[0])


@pytest.mark.slow
def test_ge2e_beats_fbank_on_speaker_tasks_and_content_tasks_run(synth_caches: dict[str, str], tmp_path: Path) -> None:
    from layerlab.probe import run_probe

    for model, cache in synth_caches.items():
        run_probe(cache, "sid", str(tmp_path / model / "sid"), layers="weighted", config=ProbeConfig(**POOLED))
        run_probe(cache, "asv", str(tmp_path / model / "asv"), layers="weighted", config=ProbeConfig(**FRAMES))
        # the small corpus's content-test speakers say IC slot values never heard in training: derive a
        # seeded split and count (drop) the unseen ones, as the probe's options document
        ic = {**POOLED, "ignore_dataset_split": True, "drop_unseen_labels": True}
        for task, cfg in (("ks", POOLED), ("ic", ic), ("style", POOLED), ("pr", FRAMES)):
            run_probe(cache, task, str(tmp_path / model / task), layers="weighted", config=ProbeConfig(**{**cfg, "max_epochs": 5}))
            assert (tmp_path / model / task / "metrics.parquet").is_file()
    sid = {m: _test_value(tmp_path / m / "sid", "weighted_sum", "accuracy") for m in synth_caches}
    eer = {m: _test_value(tmp_path / m / "asv", "weighted_sum", "eer") for m in synth_caches}
    assert sid["ge2e"] >= 0.8 and sid["ge2e"] > sid["fbank"] + 0.3, sid
    assert eer["ge2e"] < 0.25 and eer["ge2e"] < eer["fbank"] - 0.1, eer


@pytest.mark.slow
def test_librispeech_sid_derives_a_split(ray_session, librispeech_excerpt: Path, tmp_path: Path) -> None:
    from layerlab.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["corpus", "import", "librispeech", str(librispeech_excerpt), "--out", str(tmp_path / "ls")])
    assert result.exit_code == 0, result.output
    acc = {}
    for model in ("ge2e", "fbank"):
        cache = _extract(model, str(tmp_path / "ls"), str(tmp_path / f"cache-{model}"), tier="pooled")
        out = tmp_path / f"probe-{model}"
        result = runner.invoke(app, ["probe", "--cache", cache, "--task", "sid", "--out", str(out), "--layers", "weighted"])
        assert result.exit_code == 0, result.output
        acc[model] = _test_value(out, "weighted_sum", "accuracy")
        summary = pd.read_json(out / "summary.json", typ="series")
        assert summary["task_info"]["splits"]["derived"] is True
    assert acc["ge2e"] >= 0.8 and acc["ge2e"] > acc["fbank"] + 0.3, acc

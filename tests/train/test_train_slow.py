"""Slow training checks: kill -9 and resume, `ray job submit` of jobs/train.py, the tiny recipes' targets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers.ray_head import submit_and_wait
from helpers.train_inputs import tiny_config

from layerlab import storage

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO),
       "PATH": f"{BIN}:{os.environ['PATH']}"}


def _checkpoints(out: str) -> list[str]:
    return [d for d in storage.list_files(storage.join(out, "ray")) if d.rsplit("/", 1)[-1].startswith("checkpoint_") and not d.endswith(".json")] if storage.exists(storage.join(out, "ray")) else []


@pytest.mark.slow
def test_killed_run_resumes_from_its_latest_checkpoint(train_corpus: str, tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config("supervised", epochs=2, steps_per_epoch=6, checkpoint_every_steps=2)))
    proc = subprocess.Popen([str(BIN / "layerlab"), "train", "supervised", "--data", train_corpus, "--out", out, "--config", str(cfg)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not _checkpoints(out):
            assert proc.poll() is None and time.time() < deadline, "no checkpoint before the run ended"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray die together
        proc.wait(timeout=60)
    assert not storage.exists(f"{out}/summary.json")
    import ray

    from layerlab.train import run_recipe

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)
    summary = run_recipe("supervised", train_corpus, out, config=str(cfg))
    resumed = summary["resumed_from"]
    assert resumed is not None and resumed["global_step"] >= 2 and resumed["global_step"] % 2 == 0
    assert summary["global_step"] == 12  # continued from the saved step, not from zero
    import pandas as pd

    eer = pd.read_parquet(f"{out}/metrics.parquet").query("metric == 'eer'")
    assert sorted(eer.epoch) == [0, 1, 2]  # the random-init row written before the kill survived


@pytest.mark.slow
def test_ray_job_submit_train(train_corpus: str, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config("hubert")))
    out = str(tmp_path / "hubert")
    job = submit_and_wait(tmp_path, ["python", "jobs/train.py", "hubert", "--data", train_corpus, "--out", out, "--config", str(cfg)],
                          timeout_s=480)
    assert job.ok, job.logs[-3000:]
    assert "[hubert] epoch 1/1" in job.logs and '"model_spec"' in job.logs
    summary = json.loads(Path(out, "summary.json").read_text())
    assert summary["model_spec"] == f"s3prl:hubert_local:{out}/checkpoint.pt"


@pytest.fixture(scope="module")
def corpus48(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The default synthetic corpus (48 speakers, 12 held out for 1,584 ASV trials)."""
    from layerlab.data.synth import SynthConfig, build_synth_corpus

    root = str(tmp_path_factory.mktemp("corpus48") / "corpus")
    build_synth_corpus(root, SynthConfig(speakers=48, seed=0), progress=False)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("recipe,target", [("supervised", 0.10), ("dino", 0.25)])
def test_tiny_speaker_recipes_reach_their_eer_targets(corpus48: str, tmp_path: Path, recipe: str, target: float) -> None:
    from layerlab.train import run_recipe

    s = run_recipe(recipe, corpus48, str(tmp_path / recipe), config=REPO / "configs" / "train" / f"{recipe}-tiny.yaml")
    assert s["metrics"]["eer"] < target
    assert s["metrics"]["eer"] < s["random_init"]["eer"] - 0.1  # far below the same backbone with random weights


@pytest.mark.slow
def test_tiny_hubert_predicts_masked_clusters_well_above_chance_and_its_best_layer_beats_fbank_on_phones(
        corpus48: str, tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_pr_probe import collect, linear_probe

    from layerlab.train import run_recipe

    s = run_recipe("hubert", corpus48, str(tmp_path / "hubert"), config=REPO / "configs" / "train" / "hubert-tiny.yaml")
    m = s["metrics"]
    assert m["masked_acc"] > 5 * m["chance_uniform"] and m["masked_acc"] > m["chance_majority"] + 0.05
    # the target: a linear phone probe on the best layer beats the fbank baseline (same probe, same frames budget)
    fbank = max(linear_probe(d) for d in collect("fbank", corpus48, 40000, 0).values())
    hubert = {layer: linear_probe(d) for layer, d in collect(s["model_spec"], corpus48, 40000, 0).items()}
    assert max(hubert.values()) > fbank, (hubert, fbank)

"""run_recipe on the session's real Ray (Train V2 TorchTrainer, CPU worker): outputs, loading, resume, S3, errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from helpers.train_inputs import tiny_config
from typer.testing import CliRunner

from layerlab import storage
from layerlab.models import load
from layerlab.settings import SettingsMismatch
from layerlab.train import run_recipe

pytestmark = pytest.mark.usefixtures("ray_session")


def test_supervised_writes_loadable_checkpoint_metrics_curve_and_resumes_from_the_saved_step(train_corpus: str, out_dir: str,
                                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.chdir(os.path.dirname(out_dir))  # relative paths as a user types them; the Train worker runs elsewhere
    first = run_recipe("supervised", os.path.relpath(train_corpus), os.path.basename(out_dir), config=tiny_config("supervised"))
    assert first["complete"] and first["resumed_from"] is None and first["global_step"] == 2
    assert first["model_spec"] == f"ckpt:{out_dir}/checkpoint.pt"
    assert set(first["random_init"]) == {"eer"} and 0.0 <= first["metrics"]["eer"] <= 1.0
    assert first["data_counts"]["held_out_speakers"] == 2 and first["data_counts"]["training_utterances"] == 9
    assert len(first["training_speakers"]) == 3 and not set(first["training_speakers"]) & {
        s for group in first["excluded_speakers"].values() for s in group}
    assert storage.read_json(f"{out_dir}/summary.json")["training_speakers"] == first["training_speakers"]
    metrics = pd.read_parquet(f"{out_dir}/metrics.parquet")
    assert list(metrics.columns) == ["epoch", "step", "metric", "value"]
    assert set(metrics.loc[metrics.metric == "eer", "epoch"]) == {0, 1}  # epoch 0 = random weights
    assert storage.read_bytes(f"{out_dir}/curve.png")[:4] == b"\x89PNG"
    model = load(first["model_spec"], device="cpu")
    assert model.layer_names == ["block0", "block1", "block2", "block3", "mfa", "asp", "embedding"]
    assert model.dims[-1] == 16
    out = model(torch.zeros(1, 16000).uniform_(-0.1, 0.1))
    assert out.hidden[0].shape[1] == 101 and out.hidden[-1].shape == (1, 1, 16)
    # other settings are refused before anything runs (a changed lr used to return the old model, changed channels to
    # die in a long traceback): run.json keeps the settings that made the model
    recorded = storage.read_json(f"{out_dir}/run.json")
    assert recorded["settings"]["recipe"] == "supervised" and recorded["settings"]["config"]["lr"] == 1e-3 and recorded["fingerprint"]
    with pytest.raises(SettingsMismatch, match=r"holds a supervised training run made with other settings \(differing: config.lr\)") as err:
        run_recipe("supervised", train_corpus, out_dir, config=tiny_config("supervised", lr=0.5))
    assert err.value.keys == ["config.lr"]
    with pytest.raises(SettingsMismatch, match=r"differing: config.model.channels\)"):
        run_recipe("supervised", train_corpus, out_dir, config=tiny_config("supervised", model={"channels": [8, 8, 8, 8, 24]}))
    assert storage.read_json(f"{out_dir}/run.json") == recorded
    from layerlab.cli import app

    changed = Path(out_dir).parent / "changed.yaml"
    changed.write_text(yaml.safe_dump(tiny_config("supervised", lr=0.5)))
    result = CliRunner().invoke(app, ["train", "supervised", "--data", train_corpus, "--out", out_dir, "--config", str(changed)])
    assert result.exit_code == 2 and [line for line in result.output.splitlines() if line.strip()] == [
        "error: the output folder holds a supervised training run made with other settings (differing: config.lr); "
        f"use another --out, or --overwrite to start afresh ({out_dir})"]
    # asking for more epochs resumes from the saved checkpoint: epoch 1 done, global step 2
    second = run_recipe("supervised", train_corpus, out_dir, config=tiny_config("supervised", epochs=2))
    assert second["resumed_from"] == {"epoch": 1, "step_in_epoch": 0, "global_step": 2}
    assert second["global_step"] == 4
    record = storage.read_json(f"{out_dir}/run.json")
    assert record["settings"]["config"]["epochs"] == 2 and [r["changed"] for r in record["resumed"]] == [["config.epochs"]]
    metrics = pd.read_parquet(f"{out_dir}/metrics.parquet")
    assert set(metrics.loc[metrics.metric == "eer", "epoch"]) == {0, 1, 2}  # history kept across the resume
    # the identical finished run is not trained again
    assert run_recipe("supervised", train_corpus, out_dir, config=tiny_config("supervised", epochs=2)) == second
    # another recipe cannot resume this run
    with pytest.raises(ValueError, match="holds a 'supervised' training run; cannot resume it as 'dino'"):
        run_recipe("dino", train_corpus, out_dir, config=tiny_config("dino"))


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(train_corpus: str, out_dir: str) -> None:
    from layerlab.train.loop import TrainingDiverged

    # one step of lr 1e30 leaves a finite loss (checkpointed after step 1), then the weights overflow
    cfg = tiny_config("supervised", steps_per_epoch=3, checkpoint_every_steps=1, lr=1e30, warmup_steps=0, grad_clip=None, min_lr_ratio=1.0)
    with pytest.raises(TrainingDiverged, match=r"recipe supervised: loss is nan at epoch 1 step 2 .*last good checkpoint: epoch 0, step 1"):
        run_recipe("supervised", train_corpus, out_dir, config=cfg)
    assert not storage.exists(f"{out_dir}/summary.json")
    kept = [d for d in storage.list_files(f"{out_dir}/ray") if d.rsplit("/", 1)[-1].startswith("checkpoint_") and not d.endswith(".json")]
    assert len(kept) == 1 and storage.exists(f"{kept[0]}/state.pt")  # the step-1 checkpoint, nothing after it


def test_dino_on_two_ddp_workers_checkpoints_to_s3_and_the_teacher_loads_from_there(train_corpus: str, s3_bucket: str) -> None:
    out = f"{s3_bucket}/runs/dino"
    summary = run_recipe("dino", train_corpus, out, config=tiny_config("dino", ray={"num_workers": 2, "cpus_per_worker": 1}))
    assert summary["num_workers"] == 2 and summary["global_step"] == 2
    assert summary["model_spec"] == f"ckpt:{out}/checkpoint.pt"
    assert storage.exists(f"{out}/metrics.parquet") and storage.exists(f"{out}/summary.json")
    assert any("checkpoint_" in u for u in storage.list_files(f"{out}/ray"))  # Ray Train's own checkpoints on S3
    model = load(summary["model_spec"], device="cpu")
    assert model.layer_names[-1] == "embedding"
    from layerlab.models.formats import ecapa

    assert ecapa.read(f"{out}/checkpoint.pt").meta["network"] == "dino teacher"


@pytest.mark.slow
def test_hubert_checkpoint_loads_through_s3prl_hubert_local_and_extracts(train_corpus: str, out_dir: str, tmp_path) -> None:
    from s3prl.upstream.hubert.hubconf import hubert_local

    from layerlab.cache import open_cache
    from layerlab.extract import ExtractConfig, extract

    summary = run_recipe("hubert", train_corpus, out_dir, config=tiny_config("hubert"))
    assert summary["model_spec"] == f"s3prl:hubert_local:{out_dir}/checkpoint.pt"
    m = summary["metrics"]
    assert 0 <= m["masked_acc"] <= 1 and m["chance_uniform"] == pytest.approx(1 / 8)
    expert = hubert_local(ckpt=f"{out_dir}/checkpoint.pt")  # s3prl's own loader
    assert len(expert([torch.zeros(32000)])["hidden_states"]) == 3
    model = load(summary["model_spec"], device="cpu")
    assert model.layer_names == ["hidden_0", "hidden_1", "hidden_2"] and model.frame_rates == [50.0] * 3
    cache = str(tmp_path / "cache")
    result = extract(summary["model_spec"], train_corpus, cache, ExtractConfig(progress=False, tier="both"))
    assert result.ok and open_cache(cache).metadata.layer_names == model.layer_names

"""The packaged demo study: valid, offline, and its inlined training configs equal stream T's tiny configs."""

from __future__ import annotations

from pathlib import Path

import yaml

from layerlab.study.cli import DEMO_CONFIG
from layerlab.study.config import load_study_config
from layerlab.study.plan import build_plan

REPO = Path(__file__).resolve().parents[2]
TINY = {"supervised": "supervised-tiny.yaml", "dino": "dino-tiny.yaml", "hubert": "hubert-tiny.yaml"}


def test_demo_trains_the_papers_model_families_with_the_tiny_configs() -> None:
    config, _ = load_study_config(str(DEMO_CONFIG))
    trained = {m.train.recipe: m for m in config.models.values() if m.train}
    assert set(trained) == set(TINY)
    for recipe, model in trained.items():
        tiny = yaml.safe_load((REPO / "configs" / "train" / TINY[recipe]).read_text())
        tiny.pop("recipe", None)
        assert model.train.config == tiny, f"demo.yaml's {recipe} config drifted from configs/train/{TINY[recipe]}"
    assert {m.resolved_family() for m in config.models.values()} == {"baseline", "speaker", "speech_ssl", "other"}  # other: planted
    assert config.models["hubert_mini_random"].random_init and config.models["hubert_mini_random"].control_of == "hubert_mini"
    assert config.models["planted"].spec == "planted"


def test_demo_plan_is_offline_and_complete(tmp_path: Path) -> None:
    config, _ = load_study_config(str(DEMO_CONFIG))
    plan = build_plan(config, str(tmp_path / "demo"))
    assert plan.problems == [] and not any(s.needs_network for s in plan.order())
    probes = {s.params["task"] for s in plan.order() if s.kind == "probe"}
    assert probes == {"pr", "ks", "ic", "sid", "asv"}
    across = {tuple(s.params["models"]) for s in plan.order() if s.kind == "cka" and "/across/" in s.id}
    assert len(across) == 12 and ("hubert_mini", "hubert_mini_random") in across  # the learned models' pairs, the control with its model
    assert all("measures" in s.params for s in plan.order() if s.kind == "cka" and "/across/" in s.id)  # the measure-agreement table
    assert {s.id.split("/")[-1] for s in plan.order() if s.kind == "profile"} == set(config.models)  # the 'what each layer encodes' panel
    probed = {(s.params["model"], s.params["task"]) for s in plan.order() if s.kind == "probe"}
    assert {("planted", "pr"), ("planted", "sid"), ("hubert_mini_random", "pr")} <= probed and ("planted", "asv") not in probed
    assert all(s.params["config"]["tier"] == "both" for s in plan.order() if s.kind == "extract")  # PR and ASV read frames


def test_probe_task_models_filter_names_study_models(tmp_path: Path) -> None:
    from layerlab.study.config import TaskEntry

    config, _ = load_study_config(str(DEMO_CONFIG))
    config.probe.tasks = [TaskEntry(task="sid", models=["fbank", "nosuch"])]
    plan = build_plan(config, str(tmp_path / "demo"))
    assert any("probe.tasks[sid].models: unknown model(s) nosuch" in p for p in plan.problems)
    assert {s.params["model"] for s in plan.order() if s.kind == "probe"} == {"fbank"}

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
    assert {m.resolved_family() for m in config.models.values()} == {"baseline", "speaker", "speech_ssl"}


def test_demo_plan_is_offline_and_complete(tmp_path: Path) -> None:
    config, _ = load_study_config(str(DEMO_CONFIG))
    plan = build_plan(config, str(tmp_path / "demo"))
    assert plan.problems == [] and not any(s.needs_network for s in plan.order())
    probes = {s.params["task"] for s in plan.order() if s.kind == "probe"}
    assert probes == {"pr", "ks", "ic", "sid", "asv", "style"}
    assert len([s for s in plan.order() if s.kind == "cka" and "/across/" in s.id]) == 15  # every pair of 6 models
    assert all(s.params["config"]["tier"] == "both" for s in plan.order() if s.kind == "extract")  # PR and ASV read frames

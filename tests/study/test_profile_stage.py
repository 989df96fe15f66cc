"""The study's training-free profile stage: planned per (dataset, model), frames tier when a reference needs it, reused by fingerprint."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from study_fixtures import tiny_study
from layerlab.study.config import StudyConfigError, parse_study_config
from layerlab.study.plan import build_plan

DOC: dict[str, Any] = {
    "datasets": {"synth": {"synth": {"speakers": 4}}},
    "models": {"fbank": {"spec": "fbank"}, "ge2e": {"spec": "ge2e"}},
    "probe": {"tasks": ["sid"]},
    "cka": None,
    "profile": {"references": ["phone", "speaker"], "clusters": 20, "models": ["ge2e"]},
}


def _plan(doc: dict[str, Any]):  # noqa: ANN202
    return build_plan(parse_study_config(doc, "test.yaml"), "/tmp/study-out")


def test_profile_stages_follow_the_config_and_force_the_frames_tier_for_frame_references() -> None:
    plan = _plan(DOC)
    assert [s.id for s in plan.order() if s.kind == "profile"] == ["profile/synth/ge2e"]
    stage = plan.stages["profile/synth/ge2e"]
    assert stage.deps == ["extract/synth/ge2e"] and stage.out == "/tmp/study-out/profile/synth/ge2e"
    assert stage.params["references"] == ["phone", "speaker"] and stage.params["clusters"] == 20
    assert plan.stages["extract/synth/ge2e"].params["config"]["tier"] == "both"  # phone frames
    assert plan.stages["extract/synth/fbank"].params["config"]["tier"] == "pooled"  # not profiled, SID only
    assert "profile/synth/ge2e" in plan.stages["report"].deps
    speaker_only = copy.deepcopy(DOC)
    speaker_only["profile"]["references"] = ["speaker"]
    assert _plan(speaker_only).stages["extract/synth/ge2e"].params["config"]["tier"] == "pooled"
    assert not [s for s in _plan({**DOC, "profile": None}).order() if s.kind == "profile"]


def test_a_profile_setting_reruns_only_the_profile_and_the_report() -> None:
    base = _plan(DOC)
    doc = copy.deepcopy(DOC)
    doc["profile"]["clusters"] = 30
    changed = {k for k, s in _plan(doc).stages.items() if s.fingerprint != base.stages[k].fingerprint}
    assert changed == {"profile/synth/ge2e", "report"}


@pytest.mark.parametrize("section, message", [
    ({"references": ["phone", "phonme"]}, "profile.references: unknown reference(s) phonme"),
    ({"models": ["nope"]}, "profile.models: 'nope' is not a model"),
    ({"ridges": [0.0]}, "profile.ridges: ridges must be positive"),
    ({"clusters": 5, "k": 3}, "profile.k: unknown key"),
])
def test_bad_profile_sections_are_one_line_naming_the_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(StudyConfigError, match="^test.yaml: " + message.replace("(", r"\(").replace(")", r"\)")):
        parse_study_config({**DOC, "profile": section}, "test.yaml")


@pytest.mark.slow
def test_tiny_study_profiles_reports_and_reuses(tmp_path: Path, ray_session: None) -> None:
    from layerlab.study.runner import run_study

    doc = tiny_study(cka=None, profile={"references": ["phone", "speaker", "keyword"], "clusters": 8, "pilot_frames": 2000})
    out = tmp_path / "study"
    result = run_study(parse_study_config(doc, "tiny.yaml"), str(out), say=lambda _m: None)
    assert not result.failed and {"profile/synth/fbank", "profile/synth/mfcc"} <= set(result.computed)
    table = pd.read_parquet(out / "profile" / "synth" / "fbank" / "profile.parquet")
    assert {"phone", "speaker"} <= set(table["reference"]) and table["value"].notna().all()
    page = (out / "report" / "index.html").read_text()
    assert "What each layer encodes" in page and "keyword: no utterance carries keyword (ks) labels" in page
    encodes = pd.read_parquet(out / "report" / "tables" / "encodes.parquet")
    assert set(encodes["model"]) == {"fbank", "mfcc"}
    doc["profile"]["clusters"] = 6
    again = run_study(parse_study_config(doc, "tiny.yaml"), str(out), say=lambda _m: None)
    assert set(again.computed) == {"profile/synth/fbank", "profile/synth/mfcc", "report"}
    assert json.loads((out / "run.json").read_text())["failed"] == []

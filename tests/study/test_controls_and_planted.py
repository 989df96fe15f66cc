"""Study entries for random-init controls and the planted model; frame-level CKA CIs keep the asked grouping."""

from __future__ import annotations

from typing import Any

import pytest

from layerlab.study.config import StudyConfigError, parse_study_config
from layerlab.study.plan import build_plan

SYNTH = {"synth": {"speakers": 4}}
HUBERT = {"train": {"recipe": "hubert", "config": {"epochs": 1}}}


def _config(models: dict[str, Any], cka: dict[str, Any] | None = None):  # noqa: ANN202
    doc = {"datasets": {"synth": SYNTH}, "models": models, "probe": {"tasks": ["sid"]},
           "cka": cka or {"within": {"levels": ["utterance"]}, "across": None}}
    return parse_study_config(doc, "test.yaml")


def test_control_of_a_spec_model_extracts_the_random_spec_and_names_its_model() -> None:
    from layerlab.study.index import study_index

    config = _config({"ge2e": {"spec": "ge2e"}, "ge2e_rand": {"spec": "ge2e", "random_init": True, "seed": 2}})
    plan = build_plan(config, "/tmp/study-controls")
    assert plan.stages["extract/synth/ge2e_rand"].params["spec"] == "random:seed=2:ge2e"
    assert plan.stages["extract/synth/ge2e"].params["spec"] == "ge2e"
    assert plan.stages["extract/synth/ge2e_rand"].fingerprint != plan.stages["extract/synth/ge2e"].fingerprint
    models = study_index(plan, {}, {})["models"]
    assert models["ge2e_rand"]["control_of"] == "ge2e" and models["ge2e_rand"]["random_init"] == {"seed": 2}
    assert models["ge2e_rand"]["family"] == models["ge2e"]["family"] == "speaker"
    assert "control_of" not in models["ge2e"]
    extracted = {"extract/synth/ge2e": {"model_spec": "ge2e", "layer_names": ["lstm1", "lstm2", "lstm3", "embedding"],
                                        "frame_rates_hz": [100.0, 100.0, 100.0, None]}}
    levels = study_index(plan, extracted, {})["models"]["ge2e"]["layer_levels"]
    assert levels == {"lstm1": "frame", "lstm2": "frame", "lstm3": "frame", "embedding": "utterance"}


def test_control_of_a_trained_model_randomises_its_checkpoint() -> None:
    from layerlab.study.execute import stage_model_spec
    from layerlab.study.index import study_index

    config = _config({"hub": HUBERT, "hub_rand": {"random_init": True, "control_of": "hub", "seed": 5}})
    plan = build_plan(config, "/tmp/study-controls")
    stage = plan.stages["extract/synth/hub_rand"]
    assert stage.deps == ["corpus/synth", "train/hub"] and stage.params["random_init_of"] == {"model": "hub", "seed": 5}
    assert "train/hub_rand" not in plan.stages  # a control is not trained
    results = {"train/hub": {"model_spec": "ckpt:/runs/hub/model.pt"}}
    assert stage_model_spec(stage.params, results) == "random:seed=5:ckpt:/runs/hub/model.pt"
    assert stage_model_spec(plan.stages["extract/synth/hub"].params, results) == "ckpt:/runs/hub/model.pt"
    info = study_index(plan, {}, {})["models"]["hub_rand"]
    assert info["control_of"] == "hub" and info["family"] == "speech_ssl" and info["spec"] == "random:hub"


@pytest.mark.parametrize(("models", "message"), [
    ({"fb": {"spec": "fbank", "random_init": True}}, "'fbank' has no learned weights"),
    ({"fb": {"spec": "mfcc"}, "fb_rand": {"random_init": True, "control_of": "fb"}}, "'mfcc' has no learned weights"),
    ({"p": {"spec": "planted", "random_init": True}}, "'planted' has no learned weights"),
    ({"g": {"spec": "ge2e", "seed": 3}}, "seed is only for random_init"),
    ({"g": {"spec": "ge2e", "control_of": "x"}}, "control_of is only for random_init"),
    ({"h": {**HUBERT, "random_init": True}}, "give control_of: NAME of the trained model"),
    ({"g": {"random_init": True, "control_of": "nosuch"}}, "'nosuch' is not another model"),
    ({"g": {"spec": "ge2e"}, "r": {"random_init": True, "control_of": "g"}, "rr": {"random_init": True, "control_of": "r"}},
     "is itself a random-init control"),
    ({"g": {"spec": "ge2e", "random_init": True, "seed": -1}}, "greater than or equal to 0"),
])
def test_wrong_control_options_are_one_error_line(models: dict[str, Any], message: str) -> None:
    with pytest.raises(StudyConfigError) as err:
        _config(models)
    text = str(err.value)
    assert message in text and len(text.splitlines()) == 1, text


def test_planted_model_info_carries_its_expectations() -> None:
    from layerlab.models.planted import PlantedModel
    from layerlab.study.index import study_index

    config = _config({"planted": {"spec": "planted:seed=1"}, "flipped": {"spec": "planted:order=content+mix+speaker+noise"}})
    models = study_index(build_plan(config, "/tmp/study-planted"), {}, {})["models"]
    assert models["planted"]["planted"] is True and models["planted"]["expect"] == PlantedModel.EXPECT
    assert models["flipped"]["expect"]["content_deepest"] is False
    with pytest.raises(StudyConfigError) as err:
        _config({"p": {"spec": "planted:depth=2"}})
    assert "bad option 'depth=2'" in str(err.value) and len(str(err.value).splitlines()) == 1


def test_frame_level_cka_intervals_by_speaker_read_the_frames_tier() -> None:
    within = {"levels": ["frame"], "bootstrap": 10, "group_by": "speaker"}
    plan = build_plan(_config({"ge2e": {"spec": "ge2e"}}, {"within": within, "across": None}), "/tmp/study-cka")
    cka = plan.stages["cka/synth/within/ge2e/frame"]
    assert cka.params["group_by"] == "speaker" and cka.params["from_side_output"] is False  # no silent switch to shards
    extract = plan.stages["extract/synth/ge2e"].params["config"]
    assert extract["tier"] == "both" and "cka" not in extract
    assert "CIs over speakers" in cka.estimate and "frames tier" in cka.estimate
    by_shard = build_plan(_config({"ge2e": {"spec": "ge2e"}}, {"within": {**within, "group_by": "shard"}, "across": None}), "/tmp/study-cka")
    assert by_shard.stages["cka/synth/within/ge2e/frame"].params["from_side_output"] is True
    assert by_shard.stages["extract/synth/ge2e"].params["config"]["cka"] == [{"name": "frames", "estimator": "feature"}]

"""The plan's cost model: estimates against a real tiny extraction, budget errors, the --json shape, the CKA sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from layerlab.study.config import parse_study_config
from layerlab.study.plan import build_plan

SYNTH = {"speakers": 6, "read_per_speaker": 4, "keyword_repeats": 0, "unknown_per_speaker": 0, "silence_per_speaker": 0,
         "commands_per_speaker": 0, "style_sentences_per_speaker": 0, "workers": 1, "seed": 3}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A built synthetic corpus (6 talkers x 4 read sentences, espeak-ng): the plan reads its rows."""
    from layerlab.data.synth import SynthConfig, build_synth_corpus

    root = str(tmp_path_factory.mktemp("cost_corpus") / "data")
    build_synth_corpus(root, SynthConfig.model_validate(SYNTH), progress=False)
    return root


@pytest.fixture(scope="module")
def wavlm_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    from layerlab.models import tiny

    return f"s3prl:wavlm_local:{tiny.build_s3prl_wavlm(tmp_path_factory.mktemp('cost_models') / 'wavlm.pt', seed=2)}"


def study(corpus: str, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "cost",
        "datasets": {"d": {"path": corpus}},
        "models": {"fbank": {"spec": "fbank"}},
        "probe": {"tasks": [{"task": "pr", "config": {"max_train_utterances": 5, "max_dev_utterances": 2}}]},
        "cka": {"split": None, "max_utterances": 8, "within": {"levels": ["frame"], "bootstrap": 5, "group_by": "speaker"}, "across": None},
    }
    doc.update(over)
    return doc


def test_estimated_bytes_match_a_real_extraction_of_the_plans_selection(corpus: str, wavlm_spec: str, tmp_path: Path) -> None:
    from helpers.cache_builder import build_cache_inline

    from layerlab.cache import open_cache
    from layerlab.data.manifest import read_manifest
    from layerlab.models import load
    from layerlab.study.execute import frames_selection

    doc = study(corpus, models={"fbank": {"spec": "fbank"}, "wavlm": {"spec": wavlm_spec}})
    plan = build_plan(parse_study_config(doc, "cost.yaml"), str(tmp_path / "out"))
    assert plan.problems == []
    for name, spec in (("fbank", "fbank"), ("wavlm", wavlm_spec)):
        stage = plan.stages[f"extract/d/{name}"]
        est = plan.cost.stages[stage.id]
        selection = frames_selection(stage.params["frames"], corpus)  # what the run writes: the probe's splits and the CKA sample
        assert selection is not None and 0 < len(selection.ids) < plan.facts["d"].utterances
        out = build_cache_inline(load(spec, device="cpu"), corpus, str(tmp_path / name), frames_select=selection.ids)
        manifest = open_cache(out).manifest
        for tier in ("frames", "pooled"):
            measured = manifest.tier_bytes(tier)
            assert est.written[tier] == pytest.approx(measured, rel=0.15), (name, tier, est.written[tier], measured)
        assert est.read["audio"] == 2 * sum(s.bytes for s in read_manifest(corpus).shards)  # checksummed, then decoded


def test_over_budget_is_one_error_line_naming_the_stage(corpus: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from layerlab.cli import app

    config = tmp_path / "study.yaml"
    config.write_text(json.dumps(study(corpus, budget={"stored_tb": 1e-6})))  # 1 MB: the first frames tier breaks it
    result = CliRunner().invoke(app, ["study", str(config), "--dry-run", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: {config}: extract/d/fbank: budget stored_tb 1e-06 broken: the plan reaches ")
    plan = build_plan(parse_study_config(study(corpus, budget={"stored_tb": 1.0, "gpu_hours": 1.0}), "x"), str(tmp_path / "out"))
    assert plan.problems == [] and plan.cost.budget["stored_tb"]["ok"]


def test_dry_run_json_has_stages_and_totals_with_the_cost_keys(corpus: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from layerlab.cli import app

    config = tmp_path / "study.yaml"
    config.write_text(json.dumps(study(corpus)))
    result = CliRunner().invoke(app, ["study", str(config), "--dry-run", "--json", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    keys = {"id", "stored_bytes", "read_bytes", "gpu_hours", "peak_memory_bytes", "runs_on"}
    assert [s["id"] for s in doc["stages"]] == ["corpus/d", "extract/d/fbank", "probe/d/fbank/pr", "cka/d/within/fbank/frame", "report"]
    assert all(keys <= set(s) for s in doc["stages"])
    assert {"stored_bytes", "read_bytes", "gpu_hours", "peak_memory_bytes"} <= set(doc["totals"])
    assert doc["totals"]["stored_bytes"] == sum(s["stored_bytes"] for s in doc["stages"])
    extract = doc["stages"][1]
    assert extract["runs_on"] == "gpu workers" and extract["written_by_tier"]["frames"] > 0 and extract["flops"] > 0
    assert doc["stages"][3]["runs_on"] == "cpu workers" and doc["stages"][3]["read_by_tier"]["frames"] > 0  # a stage task on a worker


@pytest.mark.parametrize("cka, message", [
    ({"split": "test", "split_task": "pr", "max_utterances": 500}, "cka/d/within/fbank/frame: max_utterances 500 exceeds the "),
    ({"split": "test", "split_task": "pr", "max_utterances": 2}, "cka/d/within/fbank/frame: the CKA sample holds 1 speaker(s) (2 utterances)"),
])
def test_a_sample_its_split_cannot_give_is_an_error_naming_the_stage(corpus: str, tmp_path: Path, cka: dict, message: str) -> None:
    doc = study(corpus)
    doc["cka"].update(cka)
    plan = build_plan(parse_study_config(doc, "x"), str(tmp_path / "out"))
    assert any(p.startswith(message) for p in plan.problems), plan.problems


def test_a_stage_that_cannot_fit_its_node_is_an_error(corpus: str, tmp_path: Path) -> None:
    doc = study(corpus, extract={"batch_seconds": 200000.0}, nodes={"gpu": "g5.xlarge"})  # a batch's activations exceed 16 GiB x 65 %
    plan = build_plan(parse_study_config(doc, "x"), str(tmp_path / "out"))
    assert any(p.startswith("extract/d/fbank: peak memory ") and "g5.xlarge" in p for p in plan.problems), plan.problems


def test_declared_corpus_sizes_price_a_dataset_that_cannot_be_read(tmp_path: Path) -> None:
    doc = {"name": "p", "datasets": {"ls": {"path": "s3://bucket/librispeech", "corpus": "librispeech", "tasks": ["pr"]}},
           "models": {"wl": {"spec": "s3prl:wavlm_large"}},
           "probe": {"tasks": [{"task": "pr", "config": {"max_train_utterances": 1000}}]},
           "cka": {"split": "test", "split_task": "pr", "max_utterances": 500, "across": None,
                   "within": {"levels": ["frame"], "bootstrap": 10, "group_by": "speaker", "groups": 10}}}
    plan = build_plan(parse_study_config(doc, "x"), "s3://bucket/out")
    est = plan.cost.stages["extract/ls/wl"]
    assert est.audio_hours == pytest.approx(111.4)
    # PR: 1,000 of 28,539 train utterances (3.5 h) + dev-clean + test-clean (10.8 h); the CKA sample lies inside test-clean
    hours = 100.6 * 1000 / 28539 + 5.4 + 5.4
    assert est.written["frames"] == pytest.approx(hours * 3600 * 25 * 1024 * 50 * 2 * 0.92, rel=0.01)
    assert est.gpu_hours == pytest.approx(111.4 * 3600 * 35.87e9 / (31.2e12 * 0.35) / 3600, rel=0.01)
    cka = plan.cost.stages["cka/ls/within/wl/frame"]  # 10 speaker groups + the convergence half + 3 of the 2.73-GB state
    assert cka.cka_state_bytes == pytest.approx(2.7316e9, rel=1e-3) and cka.peak_memory_bytes == pytest.approx(1.2e9 + 14 * cka.cka_state_bytes)
    assert cka.read["frames"] == pytest.approx(5.4 * 3600 * 25 * 1024 * 50 * 2 * 0.92, rel=0.01)  # the test-clean shards hold it
    doc["cka"]["max_utterances"] = 5000
    plan = build_plan(parse_study_config(doc, "x"), "s3://bucket/out")
    assert any(p.startswith("cka/ls/within/wl/frame: max_utterances 5000 exceeds the 2620 utterances of split 'test'") for p in plan.problems)


def test_asv_training_data_is_stored_as_fixed_crops_when_they_pay(corpus: str, tmp_path: Path) -> None:
    from layerlab.study.execute import frames_selection

    auto = study(corpus, probe={"tasks": [{"task": "asv", "config": {"asv": {"crop_seconds": 1.0}}}]}, cka=None)
    plan = build_plan(parse_study_config(auto, "x"), str(tmp_path / "out"))
    assert plan.stages["extract/d/fbank"].params["frames"]["probes"][0]["crop_seconds"] is None  # auto: a minute saved does not pay
    doc = study(corpus, probe={"tasks": [{"task": "asv", "store": "crops", "config": {"asv": {"crop_seconds": 1.0}}}]}, cka=None)
    plan = build_plan(parse_study_config(doc, "x"), str(tmp_path / "out"))
    rule = plan.stages["extract/d/fbank"].params["frames"]["probes"][0]
    assert rule["crop_seconds"] == 1.0
    sel = frames_selection(plan.stages["extract/d/fbank"].params["frames"], corpus)
    assert sel.cropped > 0 and all(c is None or c[1] == 1.0 for c in sel.ids.values())
    full = build_plan(parse_study_config({**doc, "probe": {"tasks": [{"task": "asv", "store": "full", "config": {"asv": {"crop_seconds": 1.0}}}]}},
                                         "x"), str(tmp_path / "out"))
    assert full.stages["extract/d/fbank"].params["frames"]["probes"][0]["crop_seconds"] is None
    assert plan.cost.stages["extract/d/fbank"].written["frames"] < full.cost.stages["extract/d/fbank"].written["frames"]


def test_a_joint_group_that_cannot_fit_its_gpu_is_an_error(tmp_path: Path) -> None:
    """A joint extraction group (part of the plan's API: ``members`` and ``joint_cka``) is priced as one actor."""
    from layerlab.study.cost import estimate_plan

    doc = {"name": "j", "datasets": {"ls": {"path": "s3://b/ls", "corpus": "librispeech", "tasks": ["pr"]}},
           "models": {"wl": {"spec": "s3prl:wavlm_large"}, "hl": {"spec": "s3prl:hubert_large_ll60k"}, "fb": {"spec": "fbank"}},
           "probe": None, "cka": {"within": None, "across": {"levels": ["utterance"]}}}
    plan = build_plan(parse_study_config(doc, "x"), "s3://b/out")
    stage = plan.stages["extract/ls/wl"]
    single = plan.cost.stages[stage.id]

    def group(*models: str) -> Any:
        stage.params = {**stage.params, "members": [{**plan.stages[f"extract/ls/{m}"].params} for m in models],
                        "joint_cka": [list(models[:2])]}
        return estimate_plan(plan, plan.facts)

    small = group("wl", "fb")
    joint = small.stages[stage.id]
    assert joint.flops > single.flops and joint.cka_state_bytes > 0 and not any(p.startswith(stage.id) for p in small.problems)
    big = group("wl", "hl")  # the joint state of two 25 x 1024 models (10.7 GB) twice, beside both models: more than an A10G's 24 GiB
    assert any(p.startswith(f"{stage.id}: GPU memory ") and "the joint group cannot fit" in p for p in big.problems), big.problems
    assert big.stages[stage.id].written["pooled"] == pytest.approx(plan.cost.stages["extract/ls/wl"].written["pooled"]
                                                                   + plan.cost.stages["extract/ls/hl"].written["pooled"])

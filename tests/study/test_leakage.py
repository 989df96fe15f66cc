"""No leakage: upstream training in a study never sees a probe's dev/test speaker; the split is derived once, used by both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from study_fixtures import tiny_study

from layerlab.study.config import parse_study_config
from layerlab.study.plan import build_plan

SYNTH = {"speakers": 6, "read_per_speaker": 3, "keyword_repeats": 0, "unknown_per_speaker": 0, "silence_per_speaker": 0,
         "commands_per_speaker": 0, "style_sentences_per_speaker": 0, "workers": 1, "noise": {"prob": 0.0}, "reverb": {"prob": 0.0}}
TINY_SUPERVISED = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "crop_seconds": [1.0, 1.0], "ray": {"num_workers": 1, "cpus_per_worker": 1},
                   "model": {"channels": [16, 16, 16, 16, 48], "attention_channels": 8, "res2net_scale": 2, "se_channels": 8, "lin_neurons": 16}}


def training_study(**overrides: Any) -> dict[str, Any]:
    """A tiny study that trains a supervised ECAPA on the corpus it probes (SID, ASV cosine, PR)."""
    doc = tiny_study(
        datasets={"synth": {"synth": dict(SYNTH)}},
        models={"fbank": {"spec": "fbank"}, "ecapa": {"train": {"recipe": "supervised", "config": dict(TINY_SUPERVISED)}}},
        probe={"tasks": ["sid", "asv-cosine", "pr"], "defaults": {"layers": "weighted", "runner": "local",
                                                                  "config": {"max_epochs": 2, "patience": 1, "hidden": 16}}},
        cka=None,
    )
    doc.update(overrides)
    return doc


def predicted_dev_test_speakers(synth: dict[str, Any]) -> dict[str, set[str]]:
    """Per split key, the speakers with a dev/test utterance in the synthetic corpus's plan (no audio rendered)."""
    from layerlab.data.synth import SynthConfig
    from layerlab.data.synth.tasks import assign_roles, plan_corpus
    from layerlab.data.synth.voices import make_speakers

    cfg = SynthConfig.model_validate(synth)
    speakers = make_speakers(cfg.speakers, cfg.seed)
    out: dict[str, set[str]] = {}
    for p in plan_corpus(speakers, assign_roles(speakers, cfg), cfg):
        for key, value in p.splits.items():
            if value in ("dev", "test"):
                out.setdefault(key, set()).add(p.speaker)
    return out


def test_demo_plan_keeps_every_training_stage_off_every_probe_dev_test_speaker(tmp_path: Path) -> None:
    """9425b42: training excluded only the ASV held-out speakers (36 of 48 SID test utterances were training examples)."""
    from layerlab.study.cli import DEMO_CONFIG

    doc = yaml.safe_load(DEMO_CONFIG.read_text())
    plan = build_plan(parse_study_config(doc, "demo.yaml"), str(tmp_path / "demo"))
    assert not plan.problems
    rec = plan.leakage["synth"]
    evaluation = set(rec["evaluation_speakers"])
    assert rec["speakers"] == 48 and len(evaluation) == 17 and rec["upstream_speakers"] == 31 >= 24
    dev_test = predicted_dev_test_speakers(doc["datasets"]["synth"]["synth"])
    assert {"sid", "asv", "pr", "ks", "style"} <= set(dev_test)
    for key, speakers in dev_test.items():
        assert speakers <= evaluation, key  # every probe dev/test speaker is an evaluation speaker
    everyone = {s for group in dev_test.values() for s in group}
    trains = [s for s in plan.order() if s.kind == "train"]
    assert len(trains) == 3 and set(rec["models"]) == {s.id.split("/")[1] for s in trains}
    for stage in trains:
        excluded = {s for group in stage.params["exclude_speakers"].values() for s in group}
        assert excluded == evaluation and everyone <= excluded, stage.id
        assert rec["models"][stage.id.split("/")[1]]["seen_in_training"] == 0
    probes = [s for s in plan.order() if s.kind == "probe"]
    assert probes and all(s.params["config"]["eval_speakers"] == sorted(evaluation) for s in probes)


def test_training_speakers_are_disjoint_from_every_probe_split_of_a_planned_study(tmp_path: Path) -> None:
    """Training on the corpus's upstream speakers (what select_training keeps) vs every probed task's dev/test speakers."""
    plan = build_plan(parse_study_config(training_study(), "t.yaml"), str(tmp_path / "s"))
    assert not plan.problems
    rec = plan.leakage["synth"]
    dev_test = predicted_dev_test_speakers(SYNTH)
    all_speakers = {f"spk{i:03d}" for i in range(6)}
    training = all_speakers - {s for g in plan.stages["train/ecapa"].params["exclude_speakers"].values() for s in g}
    assert training and len(training) == rec["upstream_speakers"] == 3
    for key in ("sid", "asv", "pr"):
        assert not training & dev_test[key], key


def test_a_recipe_list_that_overlaps_the_probe_speakers_stops_the_dry_run_unless_allowed(tmp_path: Path) -> None:
    """Bad input: a user-given exclusion list misses the evaluation speakers -> one error: line counting them."""
    doc = training_study()
    doc["models"]["ecapa"]["train"]["config"]["exclude_speakers"] = []
    plan = build_plan(parse_study_config(doc, "t.yaml"), str(tmp_path / "s"))
    leak = [p for p in plan.problems if p.startswith("leakage:")]
    assert len(leak) == 1 and "would see 3 of its 3 probe dev/test speakers" in leak[0] and "allow_overlap" in leak[0]
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    cli = [sys.executable, "-m", "layerlab.cli", "study", str(path), "--dry-run", "--out", str(tmp_path / "s")]
    run = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode == 1 and len(errors) == 1 and "3 of its 3" in errors[0], run.stderr
    doc["allow_overlap"] = True
    plan = build_plan(parse_study_config(doc, "t.yaml"), str(tmp_path / "s"))
    assert not plan.problems and plan.config.allow_overlap
    assert plan.leakage["synth"]["models"]["ecapa"] == {"evaluation_speakers": 3, "seen_in_training": 3, "upstream_speakers": 3,
                                                        "exclusion": "recipe config"}
    assert any("allow_overlap" in n for n in plan.stages["train/ecapa"].notes)


@pytest.mark.slow
def test_a_small_study_trains_and_probes_on_disjoint_speakers(tmp_path: Path, ray_session: None) -> None:
    """Run it: every trained model's summary.json training_speakers vs every probe's test speakers."""
    import json

    from layerlab.data.shards import read_metadata
    from layerlab.study.runner import run_study

    out = tmp_path / "s"
    result = run_study(parse_study_config(training_study(), "t.yaml"), str(out), say=lambda _line: None)
    assert not result.failed, result.failed
    study = json.loads((out / "study.json").read_text())
    assert study["allow_overlap"] is False and study["leakage"]["synth"]["source"] == "corpus"
    training = json.loads((out / "train" / "ecapa" / "summary.json").read_text())["training_speakers"]
    assert len(training) == 3
    meta = read_metadata(str(out / "corpus" / "synth"), columns=("id", "speaker", "splits")).to_pylist()
    checked = 0
    for task, key in (("sid", "sid"), ("asv-cosine", "asv"), ("pr", "pr")):
        for model in ("fbank", "ecapa"):
            summary = json.loads((out / "probe" / "synth" / model / task / "summary.json").read_text())
            test = summary.get("test_speakers")
            if test is None:  # the probe does not record it yet: the study's split (dataset split within its evaluation speakers)
                allowed = set(study["leakage"]["synth"]["evaluation_speakers"])
                test = {r["speaker"] for r in meta if dict(r["splits"] or []).get(key) == "test" and r["speaker"] in allowed}
            assert test and not set(training) & set(test), (model, task)
            checked += 1
    assert checked == 6

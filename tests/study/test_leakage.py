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
    assert run.returncode == 2 and len(errors) == 1 and "3 of its 3" in errors[0], run.stderr
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


def test_probe_splits_draw_dev_test_from_the_study_evaluation_speakers_only() -> None:
    """ProbeConfig.eval_speakers: a derived split (IC in the demo) and a given one keep dev/test on those speakers."""
    from types import SimpleNamespace

    import pandas as pd

    from layerlab.probe import ProbeConfig
    from layerlab.probe.tasks.base import resolve_splits

    speakers = [f"s{i}" for i in range(9) for _ in range(8)]
    ids = [f"{s}-{k}" for k, s in enumerate(speakers)]
    given = [[("ic", "test" if s in ("s0", "s5") else "train")] for s in speakers]
    rows = pd.DataFrame({"speaker": speakers, "splits": given}, index=ids)
    strata = [str(k % 3) for k in range(len(ids))]
    evaluation = ["s0", "s1", "s2"]
    source, spec = SimpleNamespace(url="mem://x"), SimpleNamespace(split_key="ic")
    derived = resolve_splits(source, "ic", spec, rows, ProbeConfig(ignore_dataset_split=True, eval_speakers=evaluation),
                             strata=strata, speaker_disjoint=False)
    free = resolve_splits(source, "ic", spec, rows, ProbeConfig(ignore_dataset_split=True), strata=strata, speaker_disjoint=False)
    speaker_of = dict(zip(ids, speakers))
    for split in ("dev", "test"):
        assert {speaker_of[u] for u in derived.ids[split]} <= set(evaluation), split
    assert {speaker_of[u] for u in free.ids["test"]} - set(evaluation)  # without it, every speaker lands in test
    kept = resolve_splits(source, "ic", spec, rows, ProbeConfig(eval_speakers=evaluation), strata=strata, speaker_disjoint=False)
    assert {speaker_of[u] for u in kept.ids["test"]} == {"s0"} and any("not used" in n for n in kept.notes)


def test_partition_rules_seeded_fallback_and_a_corpus_where_everyone_is_evaluated() -> None:
    """No probed split: a seeded third of the speakers; every speaker in dev/test: training would see them all."""
    from layerlab.study.leakage import overlap, partition_from_rows

    rows = [(f"s{i}", {}) for i in range(9) for _ in range(3)]
    part = partition_from_rows("d", rows, set(), [("ks", "ks", False)], seed=0, source="corpus")
    again = partition_from_rows("d", rows, set(), [("ks", "ks", False)], seed=0, source="corpus")
    assert part.source == "seeded" and len(part.evaluation) == 3 and part.evaluation == again.evaluation
    assert len(part.upstream) == 6 and overlap(part, None)["seen_in_training"] == 0
    rows = [(f"s{i}", {"sid": "test" if k == 0 else "train", "pr": "train"}) for i in range(4) for k in range(3)]
    part = partition_from_rows("d", rows, {"s0", "s1"}, [("sid", "sid", False), ("asv", "asv", False), ("pr", "pr", False)],
                               seed=0, source="corpus")
    assert part.groups == {"sid dev/test": ["s0", "s1", "s2", "s3"], "asv trial list": ["s0", "s1"]} and part.upstream == []
    assert overlap(part, None) == {"evaluation_speakers": 4, "seen_in_training": 4, "upstream_speakers": 0}
    assert overlap(part, ["s0", "s1", "s2"])["seen_in_training"] == 1


def test_paper_trainings_on_an_unprobed_dataset_keep_only_its_asv_held_out_speakers_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """VoxCeleb2 only trains the speaker models: no probe dev/test speaker of it to exclude, and the dry run stays offline."""
    from layerlab.study.config import load_study_config

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo)
    config, _ = load_study_config("configs/paper.yaml")
    plan = build_plan(config, config.out or "")
    trains = [s for s in plan.order() if s.kind == "train"]
    assert trains and not plan.problems and plan.leakage == {}
    for stage in trains:
        assert stage.params["exclude_speakers"] == {} and any("not probed" in n for n in stage.notes), stage.id

"""The stage graph: fingerprints follow config and inputs, tiers follow tasks, skips and problems are named."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from layerlab.study.config import parse_study_config
from layerlab.study.dryrun import render_plan
from layerlab.study.plan import build_plan

DOC: dict[str, Any] = {
    "datasets": {"synth": {"synth": {"speakers": 4}}},
    "models": {"fbank": {"spec": "fbank"}, "ge2e": {"spec": "ge2e"}, "hub": {"train": {"recipe": "hubert", "config": {"epochs": 1}}}},
    "probe": {"tasks": ["sid", {"task": "pr", "tune_samples": 2}, "ks"]},
    "cka": {"within": {"levels": ["frame", "utterance"]}, "across": {"pairs": [["fbank", "ge2e"]], "levels": ["utterance"]}},
}


def _plan(doc: dict[str, Any], out: str = "/tmp/study-out", tasks: dict[str, dict[str, str]] | None = None):  # noqa: ANN202
    return build_plan(parse_study_config(doc, "test.yaml"), out, tasks)


def test_graph_shape_and_dependencies() -> None:
    plan = _plan(DOC)
    kinds = [s.kind for s in plan.order()]
    assert kinds == sorted(kinds, key=["corpus", "train", "extract", "probe", "cka", "report"].index)  # dependency order
    assert plan.stages["train/hub"].deps == ["corpus/synth"]
    assert plan.stages["extract/synth/hub"].deps == ["corpus/synth", "train/hub"]
    assert plan.stages["probe/synth/ge2e/pr"].deps == ["extract/synth/ge2e"]
    assert plan.stages["cka/synth/across/fbank__ge2e/utterance"].deps == ["extract/synth/fbank", "extract/synth/ge2e"]
    assert len([s for s in plan.order() if s.kind == "probe"]) == 3 * 3
    # PR needs every frame: the caches carry the frames tier; frame-level CKA within comes from a side-output
    assert plan.stages["extract/synth/ge2e"].params["config"]["tier"] == "both"
    assert plan.stages["extract/synth/ge2e"].params["config"]["cka"] == [{"name": "frames", "estimator": "feature"}]
    assert plan.stages["cka/synth/within/ge2e/frame"].params["from_side_output"] is True  # no CIs asked: no grouping to keep
    assert set(plan.stages["report"].deps) == {s.id for s in plan.order() if s.kind != "report"}


def test_pooled_tier_when_no_task_needs_frames() -> None:
    doc = {**DOC, "probe": {"tasks": ["sid", "ks"]}}
    assert _plan(doc).stages["extract/synth/ge2e"].params["config"]["tier"] == "pooled"


def test_fingerprints_are_stable_and_change_only_downstream() -> None:
    base = _plan(DOC)
    assert {k: s.fingerprint for k, s in base.stages.items()} == {k: s.fingerprint for k, s in _plan(DOC).stages.items()}
    doc = copy.deepcopy(DOC)
    doc["probe"]["tasks"][1]["tune_samples"] = 4  # one probe setting
    changed = {k for k, s in _plan(doc).stages.items() if s.fingerprint != base.stages[k].fingerprint}
    assert changed == {"probe/synth/fbank/pr", "probe/synth/ge2e/pr", "probe/synth/hub/pr", "report"}
    doc = copy.deepcopy(DOC)
    doc["models"]["hub"]["train"]["config"] = {"epochs": 2}  # a training setting: that model's whole branch
    changed = {k for k, s in _plan(doc).stages.items() if s.fingerprint != base.stages[k].fingerprint}
    assert changed == {"train/hub", "extract/synth/hub", "probe/synth/hub/sid", "probe/synth/hub/pr", "probe/synth/hub/ks",
                       "cka/synth/within/hub/frame", "cka/synth/within/hub/utterance", "report"}
    doc = copy.deepcopy(DOC)
    doc["datasets"]["synth"]["synth"]["seed"] = 3  # the corpus: everything
    assert all(s.fingerprint != base.stages[k].fingerprint for k, s in _plan(doc).stages.items())


def test_local_checkpoints_are_checksummed_and_missing_or_unloadable_ones_are_problems(tmp_path: Path) -> None:
    from layerlab.models import tiny

    ckpt = tmp_path / "wavlm.pt"
    tiny.build_s3prl_wavlm(ckpt, seed=1)
    (tmp_path / "notes.pt").write_bytes(b"not a checkpoint")
    models = {**DOC["models"], "w": {"spec": f"s3prl:wavlm_local:{ckpt}"}, "gone": {"spec": f"ckpt:{tmp_path / 'missing.pt'}"},
              "junk": {"spec": f"ckpt:{tmp_path / 'notes.pt'}"}}
    doc = {**DOC, "models": models}
    first = _plan(doc).stages["extract/synth/w"].fingerprint
    tiny.build_s3prl_wavlm(ckpt, seed=2)
    plan = _plan(doc)
    assert plan.stages["extract/synth/w"].fingerprint != first  # new weights, new cache
    assert plan.problems[0] == f"models.gone.spec: {tmp_path / 'missing.pt'}: does not exist"
    assert plan.problems[1].startswith(f"models.junk.spec: layerlab checkpoint {tmp_path / 'notes.pt'}: not a readable torch checkpoint")
    assert len(plan.problems) == 2  # the loadable tiny WavLM is no problem
    assert "2 problem(s): the study would not start" in render_plan(plan)


def test_hub_models_and_remote_data_are_marked_as_needing_network() -> None:
    doc = {**DOC, "datasets": {"sb": {"path": "s3://bucket/superb/ks"}}, "cka": None,
           "models": {"w": {"spec": "s3prl:wavlm_base_plus"}, "f": {"spec": "fbank"}}}
    plan = _plan(doc)
    assert plan.stages["extract/sb/w"].needs_network and not plan.stages["extract/sb/f"].needs_network
    assert plan.stages["corpus/sb"].needs_network and not plan.problems
    text = render_plan(plan)
    assert "[needs network]" in text and "pre-stage the weights" in text and "plan OK" in text


def test_tasks_without_labels_are_skipped_or_errors_when_strict() -> None:
    tasks = {"synth": {"sid": "labels", "asv": "trials"}}  # as a built corpus reports them
    plan = _plan(DOC, tasks=tasks)
    assert {s["task"] for s in plan.skipped} == {"pr", "ks"}
    assert "dataset 'synth' has no pr labels (needs labels 'pr'; it offers: asv, sid)" in [s["reason"] for s in plan.skipped]
    assert not [s for s in plan.order() if s.id.endswith("/pr")] and not plan.problems
    strict = _plan({**DOC, "strict": True}, tasks=tasks)
    assert any("has no ks labels" in p and "strict: true" in p for p in strict.problems)


def test_all_tasks_expands_to_what_the_synthetic_corpus_offers() -> None:
    doc = {**DOC, "probe": {"tasks": "all"}}
    plan = _plan({**doc, "datasets": {"synth": {"synth": {"speakers": 4, "commands_per_speaker": 0}}}})
    assert {s.params["task"] for s in plan.order() if s.kind == "probe"} == {"pr", "ks", "sid", "asv", "style"}


def test_a_relative_out_plans_absolute_stage_outputs(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Ray workers (extraction actors, Train workers) run in other working directories: every stage writes to an absolute URL."""
    monkeypatch.chdir(tmp_path)
    from study_fixtures import tiny_study

    plan = build_plan(parse_study_config(tiny_study(), "test.yaml"), "runs/rel")
    assert plan.out == str(tmp_path / "runs" / "rel")
    assert all(s.out.startswith(str(tmp_path / "runs" / "rel") + "/") for s in plan.stages.values())


def test_unknown_importer_kinds_and_options_are_problems_of_the_plan(tmp_path: Path) -> None:
    """`kind: libri` used to pass --dry-run and fail the run."""
    base = {"models": {"fbank": {"spec": "fbank"}}, "probe": None, "cka": None}
    plan = _plan({**base, "datasets": {"libri": {"import": {"kind": "libri", "src": str(tmp_path)}}}})
    assert plan.problems == ["datasets.libri.import.kind: unknown importer 'libri' (allowed: librispeech, voxceleb1, speechcommands, "
                             "fluent, iemocap, folder, csv)"]
    plan = _plan({**base, "datasets": {"libri": {"import": {"kind": "librispeech", "src": str(tmp_path), "options": {"subsets": 1}}}}})
    assert plan.problems == ["datasets.libri.import.options: librispeech takes no option(s) subsets (allowed: max_seconds, split_tasks, subset)"]


def test_a_librispeech_import_without_transcripts_plans_the_skips_the_run_makes(librispeech_excerpt: Path) -> None:
    """The importer declares SID and ASR (never PR); ASR only when the tree has transcripts: the plan knows before importing."""
    doc = {"datasets": {"libri": {"import": {"kind": "librispeech", "src": str(librispeech_excerpt)}}}, "models": {"fbank": {"spec": "fbank"}},
           "probe": {"tasks": ["sid", "pr", "asr"]}, "cka": None}
    plan = _plan(doc)
    assert not plan.problems and [s.id for s in plan.order() if s.kind == "probe"] == ["probe/libri/fbank/sid"]
    assert {s["task"] for s in plan.skipped} == {"pr", "asr"}
    assert f"no asr task: the source {librispeech_excerpt} has no .trans.txt file" in plan.stages["corpus/libri"].notes
    text = render_plan(plan)
    assert "skipped: pr on libri: dataset 'libri' has no pr labels" in text and "plan OK" in text


def test_cka_measures_reach_the_stages_and_only_change_cka_fingerprints() -> None:
    base = _plan(DOC)
    doc = copy.deepcopy(DOC)
    doc["cka"]["measures"] = ["linear_cka", "cca_r2", "procrustes"]
    doc["cka"]["measure_options"] = {"ridge": 1e-4}
    plan = _plan(doc)
    changed = {k for k, s in plan.stages.items() if s.fingerprint != base.stages[k].fingerprint}
    assert changed == {k for k in base.stages if k.startswith("cka/")} | {"report"}
    stage = plan.stages["cka/synth/across/fbank__ge2e/utterance"]
    assert stage.params["measures"] == ["linear_cka", "cca_r2", "procrustes"] and stage.params["measure_options"] == {"ridge": 1e-4}
    assert "measures" not in base.stages["cka/synth/across/fbank__ge2e/utterance"].params  # the default adds nothing
    # sample measures read frames: frame-level CKA then needs the frames tier even without a frame task
    doc = {**copy.deepcopy(DOC), "probe": {"tasks": ["sid"]}}
    assert _plan(doc).stages["extract/synth/ge2e"].params["config"]["tier"] == "pooled"
    doc["cka"]["measures"] = ["linear_cka", "mutual_knn"]
    assert _plan(doc).stages["extract/synth/ge2e"].params["config"]["tier"] == "both"
    # one family of comparisons may name its own measures (the demo: the across pairs only); the other keeps the section's
    doc = copy.deepcopy(DOC)
    doc["cka"]["across"] = {**doc["cka"].get("across", {}), "measures": ["linear_cka", "procrustes"]}
    plan = _plan(doc)
    assert plan.stages["cka/synth/across/fbank__ge2e/utterance"].params["measures"] == ["linear_cka", "procrustes"]
    assert all("measures" not in s.params for k, s in plan.stages.items() if k.startswith("cka/synth/within/"))

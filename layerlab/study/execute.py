"""What each stage kind does: one library call per stage (corpus, train, extract, probe, CKA, report).

Each executor takes the stage and the results of its dependencies and returns a JSON-able result
that the runner stores in the stage's done-marker (so a reused stage still tells its consumers
where its outputs are). Probe and train call stream P's and T's entry points by import at run time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from layerlab import storage
from layerlab.study.plan import Stage, StudyPlan


class StageSkipped(Exception):
    """The stage cannot apply to this data (e.g. a task without labels); recorded with its reason."""


@dataclass
class StageContext:
    """What an executor sees: the plan, finished dependencies' results, and a line printer."""

    plan: StudyPlan
    results: dict[str, dict[str, Any]]
    say: Callable[[str], None]
    records: dict[str, dict[str, Any]] | None = None  # every stage record so far (the report's run metadata)


def run_stage(stage: Stage, ctx: StageContext) -> dict[str, Any]:
    """Dispatch on the stage kind."""
    return EXECUTORS[stage.kind](stage, ctx)


def run_corpus(stage: Stage, ctx: StageContext) -> dict[str, Any]:
    """Synthesise, import, or check an existing audio-shard dataset; returns its URL, checksum and tasks."""
    from layerlab.data.manifest import read_manifest
    from layerlab.study.tasks import dataset_tasks

    p = stage.params
    if p["source"] == "synth":
        from layerlab.data.synth import SynthConfig, build_synth_corpus

        build_synth_corpus(stage.out, SynthConfig.model_validate({**p["synth"], "workers": p["workers"]}), progress=True)
    elif p["source"] == "import":
        from layerlab.data.importers import import_dataset

        import_dataset(p["kind"], p["src"], stage.out, name=stage.id.split("/", 1)[1], max_shard_bytes=p["max_shard_bytes"], **p["options"])
    manifest = read_manifest(stage.out)
    if not manifest.shards:
        raise ValueError(f"{stage.out}: the dataset has no shards (quarantined {manifest.quarantined})")
    return {"url": stage.out, "checksum": manifest.checksum(), "tasks": dataset_tasks(stage.out), "kept": manifest.kept,
            "quarantined": manifest.quarantined, "audio_seconds": round(manifest.audio_seconds, 2), "dataset": manifest.dataset}


def run_train(stage: Stage, ctx: StageContext) -> dict[str, Any]:
    """Train a recipe with `layerlab.train.run_recipe` (stream T) on the study's corpus."""
    from layerlab.train import load_config, run_recipe  # type: ignore[attr-defined]

    data = ctx.results[stage.deps[0]]["url"]
    config = stage.params["config"]
    if isinstance(config, dict) or "exclude_speakers" in stage.params:  # inline recipe config, or the study's exclusion list
        config = load_config(stage.params["recipe"], config)
    if "exclude_speakers" in stage.params:  # the probes' dev/test speakers of this dataset (study/leakage.py)
        config = config.model_copy(update={"exclude_speakers": stage.params["exclude_speakers"]})
    summary = run_recipe(stage.params["recipe"], data, stage.out, config=config)
    if "model_spec" not in summary:
        raise ValueError(f"train recipe {stage.params['recipe']}: run_recipe returned no model_spec")
    return _jsonable(summary)


def stage_model_spec(params: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    """The spec an extract stage loads: its own, a trained model's checkpoint, or the random-init control of one."""
    control = params.get("random_init_of")
    if control:  # the checkpoint's architecture (its config) with seeded random weights
        from layerlab.models.random_init import random_spec

        return random_spec(results[f"train/{control['model']}"]["model_spec"], control["seed"])
    return params["spec"] or results[f"train/{params['model']}"]["model_spec"]


def run_extract(stage: Stage, ctx: StageContext) -> dict[str, Any]:
    """Extract every layer into an activation cache (resumes finished shards of an interrupted run)."""
    from layerlab.cache import open_cache
    from layerlab.extract import ExtractConfig, extract

    p = stage.params
    spec = stage_model_spec(p, ctx.results)
    data = ctx.results[stage.deps[0]]["url"]
    summary = extract(spec, data, stage.out, ExtractConfig.model_validate(p["config"]))
    if summary.shards_failed or not summary.complete:
        failed = "; ".join(f"{k}: {v}" for k, v in sorted(summary.shards_failed.items())[:3])
        raise RuntimeError(f"extraction of {spec} into {stage.out} incomplete ({failed or 'shards missing'})")
    meta = open_cache(stage.out).metadata
    return {"cache": stage.out, "model_spec": spec, "layer_names": meta.layer_names, "frame_rates_hz": meta.frame_rates_hz,
            "utterances": summary.cache_utterances, "quarantined_source": summary.quarantined_source,
            "quarantined_model": summary.quarantined_model, "extract_seconds": summary.wall_seconds}


def run_probe_stage(stage: Stage, ctx: StageContext) -> dict[str, Any]:
    """Probe one task on one model's cache with `layerlab.probe.run_probe` (stream P)."""
    import layerlab.probe as probe  # type: ignore[import-not-found]

    p = stage.params
    corpus = ctx.results[f"corpus/{p['dataset']}"]
    from layerlab.study.tasks import missing_reason

    reason = missing_reason(p["task"], corpus.get("tasks", {}), p["dataset"])
    if reason:
        raise StageSkipped(reason)
    cache = ctx.results[stage.deps[0]]["cache"]
    config = probe.ProbeConfig.model_validate(p["config"]) if p["config"] else None
    summary = probe.run_probe(cache, p["task"], stage.out, layers=p["layers"], tune_samples=p["tune_samples"],
                              scheduler=p["scheduler"], config=config, seed=p["seed"],
                              runner=p.get("runner", "tune"))
    return {"dir": stage.out, "metrics": storage.join(stage.out, "metrics.parquet"),
            "layer_weights": storage.join(stage.out, "layer_weights.parquet"), "summary": _jsonable(summary)}


def run_cka_stage(stage: Stage, ctx: StageContext) -> dict[str, Any]:
    """Within- or across-model CKA with the existing `layerlab.cka` pipeline (frame-level within: side-output states)."""
    from layerlab.cka.pipeline import CKAJob, run_cka

    from layerlab.cache import open_cache

    p = stage.params
    caches = [ctx.results[d]["cache"] for d in stage.deps]
    side = "frames" if p["mode"] == "within" and p["level"] == "frame" and p.get("from_side_output", True) else None
    intervals, notes = p["bootstrap"], []
    if intervals and p["group_by"] == "shard" and len(open_cache(caches[0]).manifest.shards) < 2:
        intervals = 0  # one shard is one group: no resampling unit to build an interval from
        notes.append("no confidence interval: the cache has a single shard (the resampling unit of shard-level states)")
    from layerlab.cka.measure_registry import MeasureOptions

    job = CKAJob(caches[0], caches[1] if len(caches) > 1 else None, estimator=p["estimator"], level=p["level"],
                 group_by=p["group_by"], side_output=side, seed=ctx.plan.config.seed, bootstrap=intervals,
                 measures=p.get("measures"), options=MeasureOptions(**p.get("measure_options", {})))
    summary = run_cka(job, stage.out, bootstrap=intervals)
    return {"dir": stage.out, "tables": summary["tables"], "replicates": summary.get("replicates", []), "group_by": summary.get("group_by"),
            "heatmap": summary["heatmap"], "models": p["models"], "measures": summary.get("measures", {}), "agreement": summary.get("agreement"),
            "mode": p["mode"], "level": p["level"], "estimator": p["estimator"], "ci": summary.get("ci"),
            "n_utterances": summary.get("n_utterances"), "n_frames": summary.get("n_frames"), "notes": notes + list(summary.get("notes", []))}


def run_profile_stage(stage: Stage, ctx: StageContext) -> dict[str, Any]:
    """Training-free per-layer profiles of one model's cache (`layerlab.profile`); every reference skipped -> a skipped stage."""
    from layerlab.profile.pipeline import NothingToProfile, ProfileJob, run_profile

    p = stage.params
    job = ProfileJob(ctx.results[stage.deps[0]]["cache"], p["references"], clusters=p["clusters"], pilot_frames=p["pilot_frames"],
                     ridges=tuple(p["ridges"]), seed=p["seed"], intervals=p["intervals"])
    try:
        summary = run_profile(job, stage.out, model=p["model"])
    except NothingToProfile as exc:
        raise StageSkipped(str(exc)) from None
    return {"dir": stage.out, "table": summary["table"], "replicates": summary["replicates"], "figure": summary["figure"], "model": p["model"],
            "dataset": p["dataset"], "references": [r["name"] for r in summary["references"]], "skipped": summary["skipped"],
            "notes": [f"{r['name']}: {r['note']}" for r in summary["references"] if r["note"]], "timing_s": summary["timing_s"]}


def run_report_stage(stage: Stage, ctx: StageContext) -> dict[str, Any]:
    """Write the study index (what exists, what failed or was skipped) and render the report from results only."""
    from layerlab.report import build_report
    from layerlab.study.index import study_index

    index = study_index(ctx.plan, ctx.results, ctx.records or {})
    storage.write_json(storage.join(stage.out, "index.json"), index)
    return build_report(index, stage.out)


def _jsonable(obj: Any) -> Any:
    """Plain JSON data (pydantic models dumped, unknown objects as strings)."""
    import json

    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    return json.loads(json.dumps(obj, default=str))


EXECUTORS: dict[str, Callable[[Stage, StageContext], dict[str, Any]]] = {
    "corpus": run_corpus, "train": run_train, "extract": run_extract, "probe": run_probe_stage,
    "cka": run_cka_stage, "profile": run_profile_stage, "report": run_report_stage,
}


def now() -> float:
    return time.time()

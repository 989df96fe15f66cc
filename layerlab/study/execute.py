"""What each stage kind does: one library call per stage (corpus, train, extract, probe, CKA, report).

Each executor takes the stage and the results of its dependencies and returns a JSON-able result
that the runner stores in the stage's done-marker (so a reused stage still tells its consumers
where its outputs are). Probe and train call stream P's and T's entry points by import at run time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
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
    repairing: set[str] = field(default_factory=set)  # stages resumed to repair damaged outputs (extraction: verify every shard)


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
    """Extract every layer into an activation cache (resumes finished shards of an interrupted run).

    A joint group's stage runs all its models in one actor (``extract_joint``) into each member's cache;
    a member's own stage then only hands on its part of the group's result.
    """
    from layerlab.extract import ExtractConfig, extract

    p = stage.params
    if "group" in p:
        return dict(ctx.results[p["group"]]["members"][p["model"]])
    if "members" in p:
        return _run_joint_extract(stage, ctx)
    spec = stage_model_spec(p, ctx.results)
    data = ctx.results[stage.deps[0]]["url"]
    config = ExtractConfig.model_validate({**p["config"], "trust_remote_code": ctx.plan.config.trust_remote_code,  # consent: not a setting
                                           **({"verify": True} if stage.id in ctx.repairing else {})})  # a repair re-checks every finished shard
    selection = frames_selection(p.get("frames"), data)
    if selection is not None:  # the frames tier only for what the probes and CKA of this study read
        config = config.model_copy(update={"frames_select": selection.ids})
    summary = extract(spec, data, stage.out, config)
    _check_complete(summary, spec, stage.out)
    return {**_cache_result(stage.out, spec, summary, selection), "usage_units": summary.actor_usage}


def _check_complete(summary: Any, spec: str, out: str) -> None:
    if summary.shards_failed or not summary.complete:
        failed = "; ".join(f"{k}: {v}" for k, v in sorted(summary.shards_failed.items())[:3])
        raise RuntimeError(f"extraction of {spec} into {out} incomplete ({failed or 'shards missing'})")


def _cache_result(cache: str, spec: str, summary: Any, selection: Any = None) -> dict[str, Any]:
    """What consumers of an extraction read from its result: the cache, its layers and counts."""
    from layerlab.cache import open_cache

    meta = open_cache(cache).metadata
    return {"cache": cache, "model_spec": spec, "layer_names": meta.layer_names, "frame_rates_hz": meta.frame_rates_hz,
            "utterances": summary.cache_utterances, "quarantined_source": summary.quarantined_source,
            "quarantined_model": summary.quarantined_model, "extract_seconds": summary.wall_seconds,
            "tier_bytes": summary.tier_bytes, "frames_selection": None if selection is None else
            {"utterances": len(selection.ids), "cropped": selection.cropped, "purposes": selection.purposes}}


def _run_joint_extract(stage: Stage, ctx: StageContext) -> dict[str, Any]:
    """Every model of a joint group in one actor: each member's cache (its own tier and side-outputs) plus the pairs' joint states."""
    from layerlab.extract import ExtractConfig
    from layerlab.extract.joint import extract_joint

    p = stage.params
    members = {mp["model"]: mp for mp in p["members"]}
    specs = {m: stage_model_spec(mp, ctx.results) for m, mp in members.items()}
    data = ctx.results[stage.deps[0]]["url"]
    configs = {m: ExtractConfig.model_validate(mp["config"]) for m, mp in members.items()}
    rows = dataset_rows(data) if any(mp.get("frames") and not mp["frames"].get("all") for mp in members.values()) else None
    selections = {m: frames_selection(mp.get("frames"), data, rows) for m, mp in members.items()}
    for m, selection in selections.items():  # each member's frames tier only for what its probes and CKA read
        if selection is not None:
            configs[m] = configs[m].model_copy(update={"frames_select": selection.ids})
    dname = stage.id.split("/")[1]
    caches = {m: ctx.plan.stages[f"extract/{dname}/{m}"].out for m in members}  # where each member's own stage points
    summary = extract_joint([f"{m}={s}" for m, s in specs.items()], data, stage.out, next(iter(configs.values())),
                            member_urls=caches, member_configs=configs, pairs=[tuple(x) for x in p["joint_cka"]],
                            layers=p.get("layers") or None)
    storage.write_json(storage.join(stage.out, "summary.json"), summary.model_dump(mode="json"))
    out = {}
    for m, s in summary.members.items():
        _check_complete(s, specs[m], caches[m])
        out[m] = _cache_result(caches[m], specs[m], s, selections[m])
    return {"members": out, "joint": summary.joint, "shards": [c.model_dump() for c in summary.shards],
            "summary": storage.join(stage.out, "summary.json"), "usage_units": summary.actor_usage}


def dataset_rows(url: str) -> tuple[Any, dict[str, Any]]:
    """(rows DataFrame, tasks) of an audio-shard dataset, without its audio."""
    from layerlab.data.manifest import read_manifest
    from layerlab.data.rows import read_rows

    manifest = read_manifest(url)
    # not checksummed here: only the metadata columns are read, and an extraction checksums each shard it decodes
    return read_rows(url, manifest, verify=False), dict(manifest.tasks)


def frames_selection(rules: dict[str, Any] | None, data_url: str, rows: tuple[Any, dict[str, Any]] | None = None) -> Any:
    """The FramesSelection an extract stage writes, resolved from the dataset's rows (None: every utterance).

    ``rows``: the dataset's (rows, tasks) when the caller already read them (a joint group's members share one read).
    """
    if not rules or rules.get("all"):
        return None
    from layerlab.study.frames import resolve_selection

    rows_df, tasks = rows if rows is not None else dataset_rows(data_url)
    return resolve_selection(rules, rows_df, tasks, data_url)


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
                              runner=p.get("runner", "tune"), trust_tune_state=ctx.plan.config.trust_tune_state)
    units = list(summary.get("trial_usage") or [])
    return {"dir": stage.out, "metrics": storage.join(stage.out, "metrics.parquet"),
            "layer_weights": storage.join(stage.out, "layer_weights.parquet"),
            "summary": _jsonable({k: v for k, v in summary.items() if k != "trial_usage"}), "usage_units": units}


def run_cka_stage(stage: Stage, ctx: StageContext) -> dict[str, Any]:
    """Within- or across-model CKA with the `layerlab.cka` engine, in this stage's task on a worker.

    Frame level reads the extraction's side-output states (within: the model's own; across: its joint
    group's) when the plan says so; otherwise the frames tiers go through the distributed per-shard
    reduction (one Ray task per shard, a reducer actor). Utterance level reads the small pooled tiers here.
    """
    from layerlab.cka.pipeline import CKAJob, run_cka

    from layerlab.cache import open_cache

    p = stage.params
    caches = [ctx.results[d]["cache"] for d in stage.deps]
    frame = p["level"] == "frame"
    side = None
    if frame and p["mode"] == "within" and p.get("from_side_output", True):
        side = "frames"
    elif frame and p["mode"] == "across" and p.get("from_side_output"):
        side = "joint"
    intervals, notes = p["bootstrap"], []
    if intervals and p["group_by"] == "shard" and len(open_cache(caches[0]).manifest.shards) < 2:
        intervals = 0  # one shard is one group: no resampling unit to build an interval from
        notes.append("no confidence interval: the cache has a single shard (the resampling unit of shard-level states)")
    from layerlab.cka.measure_registry import MeasureOptions

    ids = half = folds = None
    rows = None
    if (p.get("sample") or (p.get("groups") and intervals and p["group_by"] == "speaker")) and not side:
        rows, _ = dataset_rows(ctx.results[f"corpus/{stage.id.split('/')[1]}"]["url"])
    if p.get("sample") and not side:  # the declared sample (side-output states hold whatever the extraction saw)
        from layerlab.study.frames import cka_sample

        chosen, halved, how = cka_sample(rows, p["sample"], stage.id)
        ids, half = frozenset(chosen), (frozenset(halved) if halved else None)
        notes.append(f"CKA sample: {len(chosen)} utterances of {how} (seeded, speaker-balanced)")
    elif p.get("sample"):
        notes.append("side-output states cover every utterance the extraction saw, not the declared CKA sample")
    if rows is not None and p.get("groups") and intervals and p["group_by"] == "speaker":
        from layerlab.data.selection import speaker_folds

        speakers = rows.loc[sorted(ids), "speaker"] if ids is not None else rows["speaker"]
        folds = speaker_folds([str(s) for s in speakers], int(p["groups"]), ctx.plan.config.seed)
        notes.append(f"jackknife groups: {len(set(speakers))} speakers dealt into {min(int(p['groups']), len(set(speakers)))} groups of whole speakers")
    layers = list(p.get("layers") or [None, None]) + [None]
    group_by = "shard" if side and not intervals else p["group_by"]  # no interval: the grouping is unused (side-outputs are per shard)
    job = CKAJob(caches[0], caches[1] if len(caches) > 1 else None, estimator=p["estimator"], level=p["level"],
                 group_by=group_by, side_output=side, seed=ctx.plan.config.seed, bootstrap=intervals, ids=ids, half=half,
                 speaker_groups=folds, layers_a=layers[0], layers_b=layers[1] if len(caches) > 1 else None,
                 measures=p.get("measures"), options=MeasureOptions(**p.get("measure_options", {})))
    units: list[dict[str, Any]] = []
    if frame and side is None:  # frames tiers: one Ray task per shard and a reducer actor, never one process
        from layerlab.cka.reducer import run_cka_on_ray

        summary = run_cka_on_ray(job, stage.out, bootstrap=intervals)
        units = summary.pop("usage_units", [])
    else:
        summary = run_cka(job, stage.out, bootstrap=intervals)
    return {"dir": stage.out, "tables": summary["tables"], "replicates": summary.get("replicates", []), "group_by": summary.get("group_by"),
            "heatmap": summary["heatmap"], "models": p["models"], "measures": summary.get("measures", {}), "agreement": summary.get("agreement"),
            "mode": p["mode"], "level": p["level"], "estimator": p["estimator"], "ci": summary.get("ci"),
            "n_utterances": summary.get("n_utterances"), "n_frames": summary.get("n_frames"), "notes": notes + list(summary.get("notes", [])),
            "convergence": summary.get("convergence"),
            "source": {"frames": "extraction side-output", "joint": "joint extraction side-output"}.get(side or "", "distributed reduction over the frames tiers" if frame else "pooled tier"),
            "usage_units": units}


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

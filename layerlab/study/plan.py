"""The study as a stage graph: corpus -> train -> extract -> probe -> CKA -> report.

``build_plan`` expands a :class:`StudyConfig` into stages with their parameters, dependencies,
output URLs and fingerprints (hash of kind, parameters and inputs' fingerprints). The graph is pure
data: the runner executes it, ``--dry-run`` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from layerlab import storage
from layerlab.cka.measure_registry import sample_names
from layerlab.study import tasks as task_info
from layerlab.study.config import FRAME_TASKS, StudyConfig
from layerlab.study.fingerprint import listing_checksum, stage_fingerprint, url_checksum

#: Bump a kind's version when its stage code changes what it writes (invalidates earlier results).
#: issue 20: corpus 2 / train 2 (nested speaker roles; training excludes every probe dev/test speaker), extract 2
#: (planted model), probe 2 (bounded intervals, replicates, contribution shares, convergence), cka 2 (replicates), report 2.
#: issue 22: profile 1 (training-free per-layer profiles).
STAGE_VERSIONS = {"corpus": 2, "train": 2, "extract": 2, "probe": 2, "cka": 2, "profile": 1, "report": 2}
#: Spec prefixes whose argument is a local file or folder we can check offline.
LOCAL_SPEC_PREFIXES = ("s3prl:wavlm_local:", "s3prl:hubert_local:", "hf:", "speechbrain:", "ckpt:")


@dataclass
class Stage:
    """One unit of work with its fingerprint; ``inputs`` maps input names to their fingerprints."""

    id: str
    kind: str
    params: dict[str, Any]
    deps: list[str]
    out: str
    inputs: dict[str, str] = field(default_factory=dict)
    estimate: str = ""
    notes: list[str] = field(default_factory=list)
    needs_network: bool = False
    fingerprint: str = ""


@dataclass
class StudyPlan:
    """Stages in dependency order, plus tasks skipped at planning and problems found offline."""

    config: StudyConfig
    out: str
    stages: dict[str, Stage]
    skipped: list[dict[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    leakage: dict[str, Any] = field(default_factory=dict)  # dataset -> speaker partition record and per-model overlap

    def order(self) -> list[Stage]:
        return list(self.stages.values())


def corpus_url(out: str, dataset: str, config: StudyConfig) -> str:
    d = config.datasets[dataset]
    return storage.canonical_url(d.path) if d.path is not None else storage.join(out, "corpus", dataset)


def _external_checksum(url: str, *, listing: bool = False) -> tuple[str, str | None]:
    """(checksum, problem) of a local input; remote inputs are named, not read (dry runs stay offline)."""
    if not storage.is_local(url):
        return f"url:{url}", None
    try:
        return (listing_checksum(url) if listing else url_checksum(url)), None
    except FileNotFoundError:
        return "missing", f"{url}: does not exist"


def _spec_input(spec: str) -> tuple[str, str | None, bool]:
    """(fingerprint, problem, needs network) of a model spec: local checkpoints are checksummed."""
    if spec.startswith("random:"):  # a random-init control: its inner spec's checkpoint fixes the architecture
        from layerlab.models.random_init import parse_random

        seed, inner = parse_random(spec[len("random:"):], spec)
        fingerprint, problem, network = _spec_input(inner)
        return f"random:seed={seed}:{fingerprint}", problem, network
    for prefix in LOCAL_SPEC_PREFIXES:
        if spec.startswith(prefix):
            target = spec[len(prefix):]
            if prefix == "hf:" and not (target.startswith(("/", ".", "~", "file://")) or "://" in target):
                return f"hub:{spec}", None, True  # a hub id (org/name)
            if prefix == "speechbrain:" and not (target.startswith(("/", ".", "~", "file://")) or "://" in target):
                return f"hub:{spec}", None, True
            checksum, problem = _external_checksum(target)
            if problem is None and storage.is_local(target):
                problem = _loadable_problem(spec)
            return f"{spec}@{checksum}", problem, not storage.is_local(target)
    if spec.startswith("s3prl:"):
        return f"hub:{spec}", None, True  # s3prl downloads hub names on first use
    return spec, None, False  # ge2e / fbank / mfcc: shipped with the install


def _loadable_problem(spec: str) -> str | None:
    """Why a local model spec cannot load (format, keys, config; tiny models are built), or None."""
    from layerlab.models.errors import ModelError
    from layerlab.models.preflight import check_loadable

    try:
        check_loadable(spec)
    except ModelError as exc:
        return str(exc).splitlines()[0]
    return None


def build_plan(config: StudyConfig, out: str, corpus_tasks: dict[str, dict[str, str]] | None = None) -> StudyPlan:
    """Expand ``config`` into stages writing under ``out``; ``corpus_tasks`` are the tasks of built corpora."""
    out = storage.canonical_url(out)
    plan = StudyPlan(config, out, {})
    corpus_tasks = corpus_tasks or {}

    def add(stage: Stage) -> Stage:
        stage.inputs.update({d: plan.stages[d].fingerprint for d in stage.deps})
        stage.fingerprint = stage_fingerprint(stage.kind, STAGE_VERSIONS[stage.kind], stage.params, stage.inputs)
        plan.stages[stage.id] = stage
        return stage

    predicted: dict[str, list[str] | None] = {}
    spec_inputs: dict[str, tuple[str, str | None, bool]] = {}  # one loadable check per spec, not per dataset
    for name, d in config.datasets.items():
        add(_corpus_stage(plan, name, d, out, predicted))
    probes = _probe_entries(plan, config, corpus_tasks, predicted)
    partitions = _partitions(plan, config, out, probes, corpus_tasks)
    for name, m in config.models.items():
        if m.train:
            data = m.train.data or next(iter(config.datasets))
            cfg: Any = m.train.config
            inputs: dict[str, str] = {}
            if isinstance(cfg, str):
                inputs["recipe_config"], problem = _external_checksum(cfg)
                if problem:
                    plan.problems.append(f"models.{name}.train.config: {problem}")
            if not isinstance(cfg, str) or (storage.is_local(cfg) and inputs.get("recipe_config") != "missing"):
                problem = _train_problem(m.train.recipe, cfg)
                if problem:
                    plan.problems.append(f"models.{name}.train: {problem}")
            stage = Stage(f"train/{name}", "train", {"recipe": m.train.recipe, "config": cfg, "seed": config.seed},
                          [f"corpus/{data}"], storage.join(out, "train", name), inputs,
                          estimate=f"train recipe {m.train.recipe} on {data}")
            _train_exclusion(plan, stage, name, data, m.train.recipe, cfg, partitions)
            add(stage)
    needs_frames = _models_needing_frames(config, probes)
    within = config.cka.within if config.cka else None
    for dname in config.analysed_datasets():
        for mname, m in config.models.items():
            params = {**config.extract, **m.extract}
            wants = needs_frames.get((dname, mname), False)
            frame_cka = bool(within and "frame" in within.levels and dname in config.cka_datasets())
            if frame_cka and not frame_cka_from_side_output(within):
                wants = True  # speaker-grouped CIs read the frames tier (side-output states are per shard)
            if frame_cka and sample_names(config.cka.measures):
                wants = True  # rbf_cka / mutual_knn read sampled frames (a side-output state holds no frames)
            params["tier"] = "both" if wants else params.get("tier", "pooled")
            if frame_cka and frame_cka_from_side_output(within):
                params["cka"] = [{"name": "frames", "estimator": "minibatch" if within.estimator == "minibatch" else "feature"}]
            params.setdefault("progress", False)
            spec, weights_of = config.control_source(mname)
            trained = mname if m.train else weights_of
            deps = [f"corpus/{dname}"] + ([f"train/{trained}"] if trained else [])
            sparams: dict[str, Any] = {"model": mname, "spec": spec, "config": params}
            if weights_of:  # the random-init control of a trained model: its checkpoint's architecture, seeded weights
                sparams["random_init_of"] = {"model": weights_of, "seed": m.seed or 0}
            stage = Stage(f"extract/{dname}/{mname}", "extract", sparams,
                          deps, storage.join(out, "cache", dname, mname),
                          estimate=f"{mname} over {dname}, tier {params['tier']}" + (" (random-init control)" if m.random_init else ""))
            if spec:
                if spec not in spec_inputs:
                    spec_inputs[spec] = _spec_input(spec)
                stage.inputs["model"], problem, stage.needs_network = spec_inputs[spec]
                if problem:
                    plan.problems.append(f"models.{mname}.spec: {problem}")
                if stage.needs_network:
                    stage.notes.append(f"{spec}: downloads from a model hub (needs network, or pre-stage the weights: README 'Pretrained weights offline')")
            else:
                stage.notes.append(f"model from train/{trained}" + (" with random weights (seed {})".format(m.seed or 0) if weights_of else ""))
            add(stage)
    for dname, entries in probes.items():
        part = partitions.get(dname)
        for entry in entries:
            params = entry.model_dump()
            only = params.pop("models", None)
            unknown = sorted(set(only or []) - set(config.models))
            if unknown:
                plan.problems.append(f"probe.tasks[{entry.task}].models: unknown model(s) {', '.join(unknown)} (models: {', '.join(config.models)})")
            if part is not None and part.evaluation:  # dev/test on the evaluation speakers only (kept out of upstream training)
                params["config"] = {**params["config"], "eval_speakers": part.evaluation}
            for mname in (m for m in config.models if only is None or m in only):
                add(Stage(f"probe/{dname}/{mname}/{entry.task}", "probe", {"model": mname, "dataset": dname, **params},
                          [f"extract/{dname}/{mname}"], storage.join(out, "probe", dname, mname, entry.task),
                          estimate=f"{entry.task} probe ({entry.layers}, {entry.tune_samples} trial(s)) on {mname}"))
    _cka_stages(plan, config, out, add)
    _profile_stages(plan, config, out, add)
    deps = [s.id for s in plan.stages.values() if s.kind in ("probe", "cka", "profile", "extract", "train", "corpus")]
    add(Stage("report", "report", {"report": config.report.model_dump(), "skipped": plan.skipped}, deps,
              storage.join(out, "report"), estimate="tables, figures, findings, one HTML file"))
    return plan


def _partitions(plan: StudyPlan, config: StudyConfig, out: str, probes: dict[str, list[Any]],
                corpus_tasks: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Per probed dataset that a study model trains on, its speaker partition (None where not knowable offline yet)."""
    from layerlab.study.leakage import dataset_partition

    trained_on = {m.train.data or next(iter(config.datasets)) for m in config.models.values() if m.train}
    out_parts: dict[str, Any] = {}
    for dname, entries in probes.items():
        if dname not in trained_on or not entries:
            continue
        d = config.datasets[dname]
        url = corpus_url(out, dname, config)
        readable = dname in corpus_tasks or (storage.is_local(url) and storage.exists(storage.join(url, "manifest.json")))
        tasks = [(e.task, bool((e.config or {}).get("ignore_dataset_split"))) for e in entries]
        try:
            part = dataset_partition(dname, url if readable else None, d.synth, tasks, config.seed)
        except (OSError, ValueError) as exc:
            plan.problems.append(f"datasets.{dname}: cannot read its speakers for the leakage check: {exc}")
            continue
        if part is None:
            plan.leakage[dname] = {"source": "run time", "notes": [f"{url}: evaluation speakers read when the study runs"]}
            continue
        out_parts[dname] = part
        plan.leakage[dname] = {**part.record(), "models": {}}
    return out_parts


def _train_exclusion(plan: StudyPlan, stage: Stage, name: str, data: str, recipe: str, cfg: Any, partitions: dict[str, Any]) -> None:
    """Give a training stage its dataset's evaluation speakers to exclude; a problem when it cannot (unless allow_overlap)."""
    from layerlab.study.leakage import overlap, user_exclusion

    part = partitions.get(data)
    user = user_exclusion(cfg)
    if user is None and isinstance(cfg, str) and storage.is_local(cfg) and storage.exists(cfg):
        try:
            from layerlab.train import load_config

            given = load_config(recipe, cfg).exclude_speakers
            user = None if given is None else sorted({s for g in (given.values() if isinstance(given, dict) else [given]) for s in g})
        except (ImportError, ValueError):
            pass
    if part is None:
        if data in plan.leakage:
            stage.notes.append(f"speakers excluded from training on {data}: decided at run time")
        elif user is None:  # nothing of it is probed: no dev/test speakers to keep out
            stage.params["exclude_speakers"] = {}
            stage.notes.append(f"{data} is not probed in this study: only its ASV held-out speakers stay out of training")
        return
    counts = overlap(part, user)
    plan.leakage[data]["models"][name] = {**counts, "exclusion": "recipe config" if user is not None else "study"}
    if user is None:
        stage.params["exclude_speakers"] = part.groups if part.upstream else []
    if counts["seen_in_training"]:
        why = (f"the recipe config's exclude_speakers leaves {counts['seen_in_training']} of them in" if user is not None
               else f"all {len(part.speakers)} speakers of {data} are evaluation speakers")
        if plan.config.allow_overlap:
            stage.notes.append(f"allow_overlap: trains on {counts['seen_in_training']} of {counts['evaluation_speakers']} "
                               f"probe dev/test speakers of {data}")
        else:
            plan.problems.append(f"leakage: models.{name} trains on {data} and would see {counts['seen_in_training']} of its "
                                 f"{counts['evaluation_speakers']} probe dev/test speakers ({why}); set allow_overlap: true to run anyway")
    else:
        stage.notes.append(f"trains on {counts['upstream_speakers']} upstream speakers of {data}; "
                           f"{counts['evaluation_speakers']} probe dev/test speakers excluded")


def _corpus_stage(plan: StudyPlan, name: str, d: Any, out: str, predicted: dict[str, list[str] | None]) -> Stage:
    url = corpus_url(out, name, plan.config)
    if d.synth is not None:
        from layerlab.data.synth import SynthConfig

        synth = SynthConfig.model_validate(d.synth).model_dump(mode="json", exclude={"workers"})
        predicted[name] = task_info.predicted_synth_tasks(d.synth)
        return Stage(f"corpus/{name}", "corpus", {"source": "synth", "synth": synth, "workers": d.synth.get("workers", 2)}, [], url,
                     estimate=f"synthesise {synth['speakers']} speakers (espeak-ng)")
    if d.import_ is not None:
        imp = d.import_
        predicted[name] = list(task_info.IMPORTER_TASKS.get(imp.kind, ()))
        stage = Stage(f"corpus/{name}", "corpus", {"source": "import", **imp.model_dump()}, [], url, estimate=f"import {imp.kind} from {imp.src}")
        stage.inputs["source"], problem = _external_checksum(imp.src, listing=True)
        if problem:
            plan.problems.append(f"datasets.{name}.import.src: {problem}")
        stage.needs_network = not storage.is_local(imp.src)
        return stage
    stage = Stage(f"corpus/{name}", "corpus", {"source": "path", "path": d.path}, [], url, estimate=f"use the dataset at {d.path}")
    if storage.is_local(d.path):
        try:
            from layerlab.data.manifest import read_manifest

            stage.inputs["manifest"] = read_manifest(d.path).checksum()
            predicted[name] = list(task_info.dataset_tasks(d.path))
        except (FileNotFoundError, ValueError) as exc:
            plan.problems.append(f"datasets.{name}.path: {exc}")
    else:
        stage.inputs["manifest"] = f"url:{d.path}"  # read (and checksummed) when the study runs
        predicted[name] = None  # its tasks are known once the manifest is read
        stage.needs_network = True
        stage.notes.append(f"{d.path}: remote dataset, read at run time")
    return stage


def task_tier(task: str) -> str:
    """The cache tier a probe task reads (declared by the probe library; frames for PR/ASR/ASV otherwise)."""
    try:
        from layerlab.probe.tasks import get_task
    except ImportError:  # the probe package is optional for plans without probes
        return "frames" if task in FRAME_TASKS else "pooled"
    return get_task(task).tier


def _probe_problem(entry: Any) -> str | None:
    """Why a probe entry cannot run (unknown task, invalid ProbeConfig), checked offline before any work."""
    try:
        from layerlab.probe import ProbeConfig
        from layerlab.probe.tasks import get_task
    except ImportError:
        return None
    try:
        get_task(entry.task)
        ProbeConfig.model_validate(entry.config)
    except ValueError as exc:
        return " ".join(str(exc).split())[:400]
    return None


def _train_problem(recipe: str, config: Any) -> str | None:
    """Why a training stage cannot run (unknown recipe, invalid or missing config), checked offline."""
    try:
        from layerlab.train import load_config
    except ImportError:
        return None
    try:
        load_config(recipe, config)
    except ValueError as exc:
        return " ".join(str(exc).split())[:400]
    return None


def _models_needing_frames(config: StudyConfig, probes: dict[str, list[Any]]) -> dict[tuple[str, str], bool]:
    """(dataset, model) pairs whose cache needs the frames tier (frame-level probes or across-model frame CKA)."""
    out: dict[tuple[str, str], bool] = {}
    for dname, entries in probes.items():
        if any(task_tier(e.task) == "frames" for e in entries):
            for m in config.models:
                out[(dname, m)] = True
    if config.profile and any(profile_needs_frames(r) for r in _profile_references(config)):
        for d in config.profile_datasets():
            for m in config.profile_models():
                out[(d, m)] = True
    across = config.cka.across if config.cka else None
    if across and "frame" in across.levels:
        for d in config.cka_datasets():
            for a, b in config.across_pairs():
                out[(d, a)] = out[(d, b)] = True
    return out


def _probe_entries(plan: StudyPlan, config: StudyConfig, corpus_tasks: dict[str, dict[str, str]], predicted: dict[str, list[str] | None]) -> dict[str, list[Any]]:
    """Per dataset, the probe task entries it can serve; the others are skipped with a reason (a problem when strict)."""
    out: dict[str, list[Any]] = {}
    if not config.probe:
        return out
    for dname in config.probe_datasets():
        known = corpus_tasks.get(dname)
        guess = predicted.get(dname)
        if known is None and guess is None:  # a remote dataset not read yet: plan what was asked, check at run time
            guess = config.datasets[dname].tasks or [e.task for e in config.probe.entries(list(task_info.DEFAULT_TASKS))]
        offered = known if known is not None else {t: "predicted" for t in guess or []}
        only = config.datasets[dname].tasks
        available = only or [t for t in task_info.DEFAULT_TASKS if t in offered]
        out[dname] = []
        for entry in config.probe.entries(available):
            if only is not None and entry.task not in only:
                continue
            problem = _probe_problem(entry)
            if problem:
                plan.problems.append(f"probe task {entry.task!r}: {problem}")
                continue
            reason = task_info.missing_reason(entry.task, offered, dname)
            if reason:
                if config.strict:
                    plan.problems.append(f"probe: {reason} (strict: true)")
                plan.skipped.append({"dataset": dname, "task": entry.task, "reason": reason})
            else:
                out[dname].append(entry)
    return out


def frame_cka_from_side_output(within: Any) -> bool:
    """Whether frame-level within-model CKA reads the extraction's per-shard side-output states.

    They are per shard, so CIs over speakers or utterances cannot come from them: those read the frames
    tier instead (never a silent switch of the grouping to shards).
    """
    return not (within.bootstrap and within.group_by != "shard")


def _cka_stages(plan: StudyPlan, config: StudyConfig, out: str, add: Any) -> None:
    if not config.cka:
        return
    within, across = config.cka.within, config.cka.across
    for dname in config.cka_datasets():
        if within:
            for mname in config.models:
                for level in within.levels:
                    params = {"mode": "within", "models": [mname], "level": level, **within.model_dump(exclude={"levels"}),
                              **config.cka.non_default_measures()}
                    source = ""
                    if level == "frame":
                        params["from_side_output"] = frame_cka_from_side_output(within)
                        source = " (extraction side-output states)" if params["from_side_output"] else " (frames tier: side-output states are per shard)"
                    add(Stage(f"cka/{dname}/within/{mname}/{level}", "cka", params, [f"extract/{dname}/{mname}"],
                              storage.join(out, "cka", dname, "within", mname, level),
                              estimate=f"{level}-level CKA within {mname}{source}" + (f", CIs over {params['group_by']}s" if within.bootstrap else "")))
        if across:
            for a, b in config.across_pairs():
                for level in across.levels:
                    params = {"mode": "across", "models": [a, b], "level": level, **across.model_dump(exclude={"levels", "pairs"}),
                              **config.cka.non_default_measures()}
                    add(Stage(f"cka/{dname}/across/{a}__{b}/{level}", "cka", params, [f"extract/{dname}/{a}", f"extract/{dname}/{b}"],
                              storage.join(out, "cka", dname, "across", f"{a}__{b}", level),
                              estimate=f"{level}-level CKA {a} x {b}" + (f", CIs over {across.group_by}s" if across.bootstrap else "")))


def _profile_references(config: StudyConfig) -> list[str]:
    from layerlab.profile.references import parse_references

    return parse_references(None if not config.profile or config.profile.references == "all" else config.profile.references)


def profile_needs_frames(reference: str) -> bool:
    """Whether a profile reference reads the frames tier (frame and span levels) rather than the pooled tier."""
    from layerlab.profile.references import REFERENCES

    return REFERENCES[reference].level != "utterance"


def _profile_stages(plan: StudyPlan, config: StudyConfig, out: str, add: Any) -> None:
    """One training-free profile stage per (dataset, model): both passes over the model's cache (`layerlab profile`)."""
    if not config.profile:
        return
    refs = _profile_references(config)
    params_base = {**config.profile.model_dump(exclude={"models", "datasets"}), "references": refs, "seed": config.seed}
    for dname in config.profile_datasets():
        for mname in config.profile_models():
            add(Stage(f"profile/{dname}/{mname}", "profile", {"model": mname, "dataset": dname, **params_base}, [f"extract/{dname}/{mname}"],
                      storage.join(out, "profile", dname, mname),
                      estimate=f"training-free profiles of {mname} ({', '.join(refs)}): two passes over its cache"))

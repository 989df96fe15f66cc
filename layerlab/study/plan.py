"""The study as a stage graph: corpus -> train -> extract -> probe -> CKA -> report.

``build_plan`` expands a :class:`StudyConfig` into stages with their parameters, dependencies,
output URLs and fingerprints (hash of kind, parameters and inputs' fingerprints). The graph is pure
data: the runner executes it, ``--dry-run`` prints it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from layerlab import storage
from layerlab.cka.measure_registry import sample_names
from layerlab.study import tasks as task_info
from layerlab.study.config import FRAME_TASKS, StudyConfig
from layerlab.study.fingerprint import listing_checksum, stage_fingerprint, url_checksum
from layerlab.study.groups import MemberInfo, choose_groups, group_id, settings_key

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
    cleans: list[str] | None = None  # folders a fresh (not resumed) run removes first; None: [out]

    def stale_outputs(self) -> list[str]:
        """What a fresh run of this stage clears: its own output, or the member caches of a joint group (none for a member)."""
        return [self.out] if self.cleans is None else list(self.cleans)


@dataclass
class StudyPlan:
    """Stages in dependency order, plus tasks skipped at planning and problems found offline."""

    config: StudyConfig
    out: str
    stages: dict[str, Stage]
    skipped: list[dict[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    leakage: dict[str, Any] = field(default_factory=dict)  # dataset -> speaker partition record and per-model overlap
    facts: dict[str, Any] = field(default_factory=dict)  # dataset -> cost.DatasetFacts (rows or declared sizes)
    cost: Any = None  # cost.PlanCost: every stage's bytes, GPU-hours and memory (layerlab.study.cost)

    def order(self) -> list[Stage]:
        return list(self.stages.values())


def corpus_url(out: str, dataset: str, config: StudyConfig) -> str:
    d = config.datasets[dataset]
    return storage.canonical_url(d.path) if d.path is not None else storage.join_inside(out, "corpus", dataset)


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
            if storage.is_local(target):
                return _local_spec_input(spec, target, *_stat(target))
            checksum, problem = _external_checksum(target)
            return f"{spec}@{checksum}", problem, True
    if spec.startswith("s3prl:"):
        return f"hub:{spec}", None, True  # s3prl downloads hub names on first use
    return spec, None, False  # ge2e / fbank / mfcc: shipped with the install


def _stat(target: str) -> tuple[int, int]:
    """(size, mtime in ns) of a local file or folder (0, 0 when missing): what the per-process memo is keyed on."""
    import os

    path = target.removeprefix("file://")
    try:
        st = os.stat(path)
    except OSError:
        return 0, 0
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=256)
def _local_spec_input(spec: str, target: str, size: int, mtime_ns: int) -> tuple[str, str | None, bool]:
    """A local checkpoint's checksum and load check, once per process while the file is unchanged (a study plans twice)."""
    checksum, problem = _external_checksum(target)
    if problem is None:
        problem = _loadable_problem(spec)
    return f"{spec}@{checksum}", problem, False


def _loadable_problem(spec: str) -> str | None:
    """Why a local model spec cannot load (format, keys, config; tiny models are built), or None."""
    from layerlab.models.errors import ModelError
    from layerlab.models.preflight import check_loadable

    try:
        check_loadable(spec, text_only=True)  # plans and dry runs never evaluate a bundle's code (HyperPyYAML)
    except ModelError as exc:
        return str(exc).splitlines()[0]
    return None


def _needs_remote_code(spec: str) -> bool:
    from layerlab.models.registry import needs_remote_code

    return needs_remote_code(spec)


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
                          [f"corpus/{data}"], storage.join_inside(out, "train", name), inputs,
                          estimate=f"train recipe {m.train.recipe} on {data}")
            _train_exclusion(plan, stage, name, data, m.train.recipe, cfg, partitions)
            add(stage)
    from layerlab.study import cost as cost_model

    plan.facts = cost_model.dataset_facts(plan, readable=set(corpus_tasks))
    groups = _joint_groups(plan, config, spec_inputs)
    covered = {(d, frozenset(p)) for d, gs in groups.items() for g in gs for p in g.pairs}
    needs_frames = _frames_needs(plan, config, probes, partitions, covered)
    for dname in config.analysed_datasets():
        grouped = {m: g for g in groups.get(dname, []) for m in g.members}
        for g in groups.get(dname, []):
            _add_joint_stage(plan, add, dname, g, {m: _extract_stage(plan, config, dname, m, needs_frames, spec_inputs) for m in g.members})
        for mname in config.models:
            if mname in grouped:
                gid = group_id(dname, grouped[mname].members)
                add(Stage(f"extract/{dname}/{mname}", "extract", {"model": mname, "group": gid}, [gid],
                          storage.join_inside(out, "cache", dname, mname), estimate=f"{mname}'s cache from the joint group {gid}", cleans=[]))
            else:
                add(_extract_stage(plan, config, dname, mname, needs_frames, spec_inputs))
    for dname, entries in probes.items():
        part = partitions.get(dname)
        for entry in entries:
            params = entry.model_dump()
            only = params.pop("models", None)
            unknown = sorted(set(only or []) - set(config.models))
            if unknown:
                plan.problems.append(f"probe.tasks[{entry.task}].models: unknown model(s) {', '.join(unknown)} (models: {', '.join(config.models)})")
            params["config"] = probe_config(entry, part)
            params.pop("store", None)
            for mname in (m for m in config.models if only is None or m in only):
                add(Stage(f"probe/{dname}/{mname}/{entry.task}", "probe", {"model": mname, "dataset": dname, **params},
                          [f"extract/{dname}/{mname}"], storage.join_inside(out, "probe", dname, mname, entry.task),
                          estimate=f"{entry.task} probe ({entry.layers}, {entry.tune_samples} trial(s)) on {mname}"))
    _cka_stages(plan, config, out, add, covered)
    _profile_stages(plan, config, out, add)
    deps = [s.id for s in plan.stages.values() if s.kind in ("probe", "cka", "profile", "extract", "train", "corpus")]
    add(Stage("report", "report", {"report": config.report.model_dump(), "skipped": plan.skipped}, deps,
              storage.join(out, "report"), estimate="tables, figures, findings, one HTML file"))
    plan.cost = cost_model.estimate_plan(plan, plan.facts)
    plan.problems += plan.cost.problems
    return plan


def _extract_stage(plan: StudyPlan, config: StudyConfig, dname: str, mname: str, needs_frames: dict[tuple[str, str], dict[str, Any]],
                   spec_inputs: dict[str, tuple[str, str | None, bool]]) -> Stage:
    """The extraction of one model over one dataset (its tier, side-outputs, inputs and notes); not yet added to the plan."""
    m = config.models[mname]
    within = config.cka.within if config.cka else None
    params = {**config.extract, **m.extract}
    rules = needs_frames.get((dname, mname))
    frame_cka = bool(within and "frame" in within.levels and dname in config.cka_datasets())
    params["tier"] = "both" if rules else params.get("tier", "pooled")
    if frame_cka and frame_cka_from_side_output(within):
        side: dict[str, Any] = {"name": "frames", "estimator": "minibatch" if within.estimator == "minibatch" else "feature"}
        if config.cka and mname in config.cka.layers:
            side["layers"] = list(config.cka.layers[mname])
        params["cka"] = [side]
    params.setdefault("progress", False)
    spec, weights_of = config.control_source(mname)
    trained = mname if m.train else weights_of
    deps = [f"corpus/{dname}"] + ([f"train/{trained}"] if trained else [])
    sparams: dict[str, Any] = {"model": mname, "spec": spec, "config": params}
    if rules and not rules["all"]:
        sparams["frames"] = rules  # frames only for these utterances (layerlab.study.frames)
    if weights_of:  # the random-init control of a trained model: its checkpoint's architecture, seeded weights
        sparams["random_init_of"] = {"model": weights_of, "seed": m.seed or 0}
    stage = Stage(f"extract/{dname}/{mname}", "extract", sparams,
                  deps, storage.join_inside(plan.out, "cache", dname, mname),
                  estimate=f"{mname} over {dname}, tier {params['tier']}" + (" (random-init control)" if m.random_init else ""))
    if spec:
        if spec not in spec_inputs:
            spec_inputs[spec] = _spec_input(spec)
        stage.inputs["model"], problem, stage.needs_network = spec_inputs[spec]
        if problem is None and not config.trust_remote_code and _needs_remote_code(spec):
            problem = (f"{spec}: its hyperparams.yaml is HyperPyYAML, which runs code while loading; set "
                       "trust_remote_code: true in the study config to load it (only for a bundle you trust)")
        if problem:
            plan.problems.append(f"models.{mname}.spec: {problem}")
        if stage.needs_network:
            stage.notes.append(f"{spec}: downloads from a model hub (needs network, or pre-stage the weights: README 'Pretrained weights offline')")
    else:
        stage.notes.append(f"model from train/{trained}" + (" with random weights (seed {})".format(m.seed or 0) if weights_of else ""))
    return stage


def _add_joint_stage(plan: StudyPlan, add: Any, dname: str, group: Any, members: dict[str, Stage]) -> None:
    """One extraction stage running every model of a joint group in one actor, writing each member's cache."""
    gid = group_id(dname, group.members)
    params: dict[str, Any] = {"members": [s.params for s in members.values()], "joint_cka": [list(p) for p in group.pairs]}
    chosen = {m: list(plan.config.cka.layers[m]) for m in group.members if plan.config.cka and m in plan.config.cka.layers}
    if chosen:
        params["layers"] = chosen
    deps = sorted({d for s in members.values() for d in s.deps})
    caches = [s.out for s in members.values()]
    stage = Stage(gid, "extract", params, deps, storage.join_inside(plan.out, "joint", dname, "+".join(group.members)),
                  estimate=f"{' + '.join(group.members)} over {dname} in one actor (~{group.memory_bytes / 2**30:.1f} GiB): caches plus joint "
                           f"CKA states of {', '.join(f'{a} x {b}' for a, b in group.pairs)}", cleans=caches)
    stage.cleans = [stage.out, *caches]
    for m, s in members.items():
        stage.inputs.update({f"{k}:{m}": v for k, v in s.inputs.items()})
        stage.notes += [f"{m}: {n}" for n in s.notes]
        stage.needs_network = stage.needs_network or s.needs_network
    add(stage)


def _joint_groups(plan: StudyPlan, config: StudyConfig, spec_inputs: dict[str, tuple[str, str | None, bool]]) -> dict[str, list[Any]]:
    """Per CKA dataset, the joint extraction groups of its across-model frame-level pairs (study/groups.py)."""
    from layerlab.study import cost_facts
    from layerlab.study.cost import stage_architecture

    across = config.cka.across if config.cka else None
    within = config.cka.within if config.cka else None
    if not across or "frame" not in across.levels or not across.joint or not config.across_pairs():
        return {}
    if across.bootstrap and across.group_by != "shard":
        return {}  # speaker/utterance CIs need per-group states: joint states are per shard
    if across.estimator == "minibatch":
        return {}  # joint states are feature states
    infos = []
    for name in dict.fromkeys(m for p in config.across_pairs() for m in p):
        spec, weights_of = config.control_source(name)
        if spec and spec not in spec_inputs:
            spec_inputs[spec] = _spec_input(spec)
        if spec and spec_inputs[spec][1] is not None:
            continue  # a model that cannot load is the plan's problem already
        params = {"model": name, "spec": spec, **({"random_init_of": {"model": weights_of}} if weights_of else {})}
        arch, _ = stage_architecture(plan, params)
        if arch is None:
            continue
        extract = {**config.extract, **config.models[name].extract}
        within_state = bool(within and "frame" in within.levels and frame_cka_from_side_output(within) and within.estimator != "minibatch")
        infos.append(MemberInfo(name, arch, extract, config.cka.layers.get(name) if config.cka else None, within_state, settings_key(extract)))
    if len(infos) < 2:
        return {}
    node = cost_facts.NODE_TYPES[config.nodes.gpu]
    budget = across.joint_memory_gb * 2**30 if across.joint_memory_gb else node.memory_bytes * cost_facts.ACTOR_MEMORY_SHARE
    groups = choose_groups(infos, config.across_pairs(), budget)
    return {d: groups for d in config.cka_datasets() if d in config.analysed_datasets()} if groups else {}


def probe_config(entry: Any, part: Any) -> dict[str, Any]:
    """The ProbeConfig fields a probe stage runs with (dev/test on the evaluation speakers when upstream training needs it)."""
    config = dict(entry.config)
    if part is not None and part.evaluation:  # dev/test on the evaluation speakers only (kept out of upstream training)
        config["eval_speakers"] = part.evaluation
    return config


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
        predicted[name], lacking = task_info.predicted_import_tasks(imp.kind, imp.src)
        stage = Stage(f"corpus/{name}", "corpus", {"source": "import", **imp.model_dump()}, [], url, estimate=f"import {imp.kind} from {imp.src}")
        stage.notes += [f"no {t} task: {why}" for t, why in lacking.items()]
        problem = _import_problem(imp)
        if problem:
            plan.problems.append(f"datasets.{name}.import.{problem}")
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


def _import_problem(imp: Any) -> str | None:
    """Why an import cannot run (unknown kind, options its recipe does not take), checked offline: ``<key>: <what>``."""
    from layerlab.data.importers import KINDS, recipe_options

    if imp.kind not in KINDS:
        return f"kind: unknown importer {imp.kind!r} (allowed: {', '.join(KINDS)})"
    allowed = sorted({*recipe_options(imp.kind), "max_seconds"})
    unknown = sorted(set(imp.options) - set(allowed))
    if unknown:
        return f"options: {imp.kind} takes no option(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})"
    return None


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


def _frames_needs(plan: StudyPlan, config: StudyConfig, probes: dict[str, list[Any]], partitions: dict[str, Any],
                  covered: set[tuple[str, frozenset[str]]] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """(dataset, model) -> the frames rules of its cache: what its frames probes and frame-level CKA read.

    ``{"all": True}`` when a consumer reads every utterance (frame-level CKA without a sample); otherwise the
    probes' splits (with their samples and, where the plan picks it, ASV's fixed training crops) and the CKA sample.
    Across-model pairs inside a joint extraction group (``covered``) read side-output states, not the frames tier.
    """
    out: dict[tuple[str, str], dict[str, Any]] = {}

    def need(d: str, m: str) -> dict[str, Any]:
        return out.setdefault((d, m), {"all": False, "probes": [], "cka": None})

    for dname, entries in probes.items():
        for entry in entries:
            if task_tier(entry.task) != "frames":
                continue
            rule = {"task": entry.task, "config": probe_config(entry, partitions.get(dname)), "crop_seconds": _crop_choice(plan, dname, entry)}
            for m in config.models:
                if entry.models is None or m in entry.models:
                    need(dname, m)["probes"].append(rule)
    if config.profile and any(profile_needs_frames(r) for r in _profile_references(config)):
        for d in config.profile_datasets():
            for m in config.profile_models():
                need(d, m)["all"] = True  # frame and span references read every utterance's frames (train, dev and test)
    if config.cka:
        sample = config.cka.sample(config.seed)
        within, across = config.cka.within, config.cka.across
        for d in config.cka_datasets():
            readers: set[str] = set()
            if within and "frame" in within.levels and not frame_cka_from_side_output(within):
                readers |= set(config.models)  # speaker-grouped CIs read the frames tier (side-output states are per shard)
            if within and "frame" in within.levels and sample_names(config.cka.measures_of(within)):
                readers |= set(config.models)  # rbf_cka / mutual_knn read sampled frames (a side-output state holds no frames)
            if across and "frame" in across.levels:
                readers |= {m for pair in config.across_pairs() if (d, frozenset(pair)) not in (covered or set()) for m in pair}
            for m in readers:
                rules = need(d, m)
                if sample is None:
                    rules["all"] = True
                else:
                    rules["cka"] = {k: sample[k] for k in ("split", "split_task", "max_utterances", "seed")}
    return out


def _crop_choice(plan: StudyPlan, dname: str, entry: Any) -> float | None:
    """Seconds of the fixed training crops a frames probe's data is stored as, or None for whole utterances (``store``)."""
    from layerlab.probe import ProbeConfig, crop_seconds

    crop = crop_seconds(entry.task, ProbeConfig.model_validate(entry.config))
    if crop is None or entry.store == "full":
        return None
    if entry.store == "crops":
        return crop
    from layerlab.study.cost import prefer_crops

    facts = plan.facts.get(dname)
    limit = ProbeConfig.model_validate(entry.config).max_train_utterances
    return crop if facts is not None and facts.known and prefer_crops(facts, crop, limit)[0] else None


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


def _cka_stages(plan: StudyPlan, config: StudyConfig, out: str, add: Any, covered: set[tuple[str, frozenset[str]]]) -> None:
    """One stage per comparison; each runs on a worker: side-output merges, or the distributed reduction over a tier."""
    if not config.cka:
        return
    within, across = config.cka.within, config.cka.across
    chosen = config.cka.layers
    sample = config.cka.sample(config.seed)
    extra = {"sample": sample} if sample else {}
    for dname in config.cka_datasets():
        if within:
            for mname in config.models:
                for level in within.levels:
                    params = {"mode": "within", "models": [mname], "level": level, **within.model_dump(exclude={"levels", "measures"}, exclude_none=True),
                              **extra, **config.cka.non_default_measures(within)}
                    if mname in chosen:
                        params["layers"] = [list(chosen[mname])]
                    source = ""
                    if level == "frame":
                        params["from_side_output"] = frame_cka_from_side_output(within)
                        source = " (extraction side-output states)" if params["from_side_output"] else " (frames tier: side-output states are per shard)"
                    add(Stage(f"cka/{dname}/within/{mname}/{level}", "cka", params, [f"extract/{dname}/{mname}"],
                              storage.join_inside(out, "cka", dname, "within", mname, level),
                              estimate=f"{level}-level CKA within {mname}{source}" + (f", CIs over {params['group_by']}s" if within.bootstrap else "")))
        if across:
            for a, b in config.across_pairs():
                for level in across.levels:
                    params = {"mode": "across", "models": [a, b], "level": level,
                              **across.model_dump(exclude={"levels", "pairs", "joint_memory_gb", "measures"}, exclude_none=True), **extra,
                              **config.cka.non_default_measures(across)}
                    if a in chosen or b in chosen:
                        params["layers"] = [chosen.get(a), chosen.get(b)]
                    source = ""
                    if level == "frame" and (dname, frozenset((a, b))) in covered:
                        params["from_side_output"] = True
                        source = " (joint extraction side-output states)"
                    elif level == "frame":
                        source = " (frames tiers, distributed per-shard reduction)"
                    add(Stage(f"cka/{dname}/across/{a}__{b}/{level}", "cka", params, [f"extract/{dname}/{a}", f"extract/{dname}/{b}"],
                              storage.join_inside(out, "cka", dname, "across", f"{a}__{b}", level),
                              estimate=f"{level}-level CKA {a} x {b}{source}" + (f", CIs over {across.group_by}s" if across.bootstrap else "")))


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
                      storage.join_inside(out, "profile", dname, mname),
                      estimate=f"training-free profiles of {mname} ({', '.join(refs)}): two passes over its cache"))

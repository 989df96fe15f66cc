"""The plan's cost model: per stage, audio hours, bytes written and read by tier, forward FLOPs, GPU-hours, CKA state and peak memory.

How to get a stage's estimate (the API part B's rehearsal compares measurements against)::

    from layerlab.study.config import load_study_config
    from layerlab.study.plan import build_plan

    config, _ = load_study_config("configs/paper.yaml")
    plan = build_plan(config, "runs/paper")            # plan.cost is a PlanCost
    est = plan.cost.stages["extract/librispeech/wavlm_large"]
    est.written["frames"], est.read["audio"]           # bytes by tier (TIERS)
    est.stored_bytes, est.read_bytes, est.gpu_hours    # sums
    est.peak_memory_bytes, est.gpu_memory_bytes, est.runs_on, est.node
    plan.cost.totals                                   # the same keys over every stage (peak memory: the largest)
    plan.cost.to_json()                                # what `layerlab study CONFIG --dry-run --json` prints

``estimate_plan(plan)`` recomputes it. Tiers: ``audio`` (source shards), ``frames``, ``pooled``, ``side_outputs``
(CKA states written during extraction), ``results`` (probe, CKA and report outputs), ``checkpoints`` (training).

What each kind costs:

* extract: reads the dataset's audio once; writes the pooled tier (every utterance), the frames tier for the
  plan's frames selection only (``params["frames"]``: the frames probes' splits and samples, ASV's fixed crops,
  the CKA sample; exact when the dataset's rows can be read, else from the declared corpus sizes) and the CKA
  side-outputs (one FeatureCKA state per shard plus the merged one); forward FLOPs = audio seconds x the
  architecture's FLOPs per second, GPU-hours at the node's fp32 peak x INFERENCE_EFFICIENCY; memory: process
  base + weights + a batch's kept activations (+ transients) + side-output states (on the GPU when it has one).
* probe: pooled tasks read the pooled tier once; frames tasks read their train and dev frames every epoch of every
  trial (``max_epochs`` x ``tune_samples``, twice with ``layers: both``) unless they fit ``frames_memory_mb``, and test
  once (an upper bound: early stopping ends sooner).
* cka: the source comes from the stage's settings (``params["source"]``, else: utterance level -> ``pooled``, frame
  level -> ``side_output`` when ``from_side_output`` is set (a model's own states, or a joint group's), else
  ``reduction``, the distributed per-shard reduction over the frames tiers): ``pooled`` reads both caches' pooled
  tiers, ``reduction`` the frames files of the shards holding the CKA sample, ``side_output`` one state per shard;
  memory holds one state per jackknife group (speakers, shards or utterances of the sample; one group without
  intervals) plus CKA_EXTRA_STATES. Every stage runs as a task on a worker node (study/remote.py).
* a joint extraction group (``params["members"]``, ``params["joint_cka"]``): its members' tiers and side-outputs, one joint state per compared
  pair, the audio read once, and one actor's memory (``actor_memory``); a member's own stage costs nothing.
* train: epochs x audio processed per epoch (crops) x 3 forwards; reads the training audio every epoch.
* corpus / report: what they write (audio of a synthetic or imported corpus; small result files).

Problems the plan refuses (``plan.problems``, printed as ``error:`` lines by ``--dry-run``): a budget broken (naming the
first stage at which the running total passes it), a stage whose peak memory exceeds what its node gives an actor
(a joint extraction group included), a CKA sample larger than its split or with fewer than 2 speakers.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

from layerlab import storage
from layerlab.study import cost_facts as F

TIERS = ("audio", "frames", "pooled", "side_outputs", "results", "checkpoints")
TB = 1e12
GB = 1e9


@dataclass
class StageCost:
    """One stage's estimate (bytes by tier, FLOPs, GPU-hours, memory) and where it runs."""

    id: str
    kind: str
    runs_on: str = "cpu workers"  # every stage is a Ray task on a worker (study/remote.py); the driver only schedules
    node: str = ""
    audio_hours: float = 0.0
    written: dict[str, float] = field(default_factory=dict)
    read: dict[str, float] = field(default_factory=dict)
    flops: float = 0.0
    gpu_hours: float = 0.0
    cka_state_bytes: float = 0.0
    peak_memory_bytes: float = 0.0
    gpu_memory_bytes: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def stored_bytes(self) -> float:
        return float(sum(self.written.values()))

    @property
    def read_bytes(self) -> float:
        return float(sum(self.read.values()))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "runs_on": self.runs_on, "node": self.node, "audio_hours": round(self.audio_hours, 3),
                "stored_bytes": int(self.stored_bytes), "read_bytes": int(self.read_bytes),
                "written_by_tier": {k: int(v) for k, v in self.written.items() if v}, "read_by_tier": {k: int(v) for k, v in self.read.items() if v},
                "flops": float(self.flops), "gpu_hours": round(self.gpu_hours, 4), "cka_state_bytes": int(self.cka_state_bytes),
                "peak_memory_bytes": int(self.peak_memory_bytes), "gpu_memory_bytes": int(self.gpu_memory_bytes), "notes": list(self.notes)}


@dataclass
class PlanCost:
    """Every stage's estimate, the totals, the budget verdict and the assumptions behind the numbers."""

    stages: dict[str, StageCost]
    problems: list[str] = field(default_factory=list)
    budget: dict[str, Any] = field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def totals(self) -> dict[str, Any]:
        s = list(self.stages.values())
        written = {t: sum(x.written.get(t, 0.0) for x in s) for t in TIERS}
        read = {t: sum(x.read.get(t, 0.0) for x in s) for t in TIERS}
        return {"stored_bytes": int(sum(written.values())), "read_bytes": int(sum(read.values())),
                "gpu_hours": round(sum(x.gpu_hours for x in s), 3), "peak_memory_bytes": int(max((x.peak_memory_bytes for x in s), default=0)),
                "gpu_memory_bytes": int(max((x.gpu_memory_bytes for x in s), default=0)), "audio_hours": round(sum(x.audio_hours for x in s), 2),
                "flops": float(sum(x.flops for x in s)), "written_by_tier": {k: int(v) for k, v in written.items() if v},
                "read_by_tier": {k: int(v) for k, v in read.items() if v},
                "cka_read_bytes": int(sum(x.read_bytes for x in s if x.kind == "cka")),
                "probe_read_bytes": int(sum(x.read_bytes for x in s if x.kind == "probe"))}

    def to_json(self) -> dict[str, Any]:
        return {"stages": [c.to_json() for c in self.stages.values()], "totals": self.totals, "budget": self.budget,
                "datasets": self.datasets, "problems": list(self.problems), "assumptions": F.assumptions()}


# ---------------------------------------------------------------------------------------------------------- datasets
@dataclass
class DatasetFacts:
    """What the cost model knows of a dataset: its rows (exact) or declared sizes (corpus table / hours)."""

    name: str
    url: str
    source: str
    utterances: int = 0
    seconds: float = 0.0
    speakers: int = 0
    audio_bytes: float = 0.0
    shards: int = 0
    rows: Any = None  # DataFrame indexed by id with a "shard" column, when the dataset can be read
    tasks: dict[str, Any] = field(default_factory=dict)
    corpus: F.Corpus | None = None

    @property
    def known(self) -> bool:
        return self.seconds > 0

    def record(self) -> dict[str, Any]:
        return {"source": self.source, "utterances": self.utterances, "hours": round(self.seconds / 3600, 2), "speakers": self.speakers,
                "audio_bytes": int(self.audio_bytes), "shards": self.shards}


def dataset_facts(plan: Any, readable: set[str] | None = None) -> dict[str, DatasetFacts]:
    """Per dataset of the plan: rows from a readable manifest (local, or built in this run), else declared sizes."""
    from layerlab.study.plan import corpus_url

    out = {}
    for name, d in plan.config.datasets.items():
        url = corpus_url(plan.out, name, plan.config)
        out[name] = _facts(name, url, d, readable is not None and name in readable)
    return out


def _facts(name: str, url: str, d: Any, built: bool) -> DatasetFacts:
    if storage.is_local(url) or built:
        try:
            if storage.exists(storage.join(url, "manifest.json")):
                return _read_facts(name, url)
        except Exception:  # noqa: BLE001 - an unreachable remote dataset falls back to its declared size
            pass
    corpus = F.CORPORA.get(d.corpus or "") or (F.CORPORA.get(F.IMPORTER_CORPORA.get(d.import_.kind, "")) if d.import_ else None)
    if d.hours is not None:
        seconds = 3600.0 * d.hours
        n = corpus.utterances * d.hours / corpus.hours if corpus else int(seconds / 8.0)
        return DatasetFacts(name, url, f"declared hours: {d.hours:g}", int(n), seconds, corpus.speakers if corpus else 0,
                            seconds * F.AUDIO_BYTES_PER_SECOND, 0, corpus=corpus)
    if corpus is not None:
        seconds = 3600.0 * corpus.hours
        return DatasetFacts(name, url, f"declared corpus: {corpus.name}", corpus.utterances, seconds, corpus.speakers,
                            seconds * F.AUDIO_BYTES_PER_SECOND, 0, corpus=corpus)
    if d.synth is not None:
        return _synth_estimate(name, url, d.synth)
    return DatasetFacts(name, url, "unknown (give the dataset corpus: or hours:)")


def _read_facts(name: str, url: str) -> DatasetFacts:
    from layerlab.data.manifest import read_manifest
    from layerlab.data.rows import read_rows

    manifest = read_manifest(url)
    rows = read_rows(url, manifest, verify=False, with_shard=True)
    seconds = float(rows["num_samples"].sum()) / 16000.0
    audio = float(sum(s.bytes for s in manifest.shards))
    return DatasetFacts(name, url, "manifest", len(rows), seconds, int(rows["speaker"].nunique()), audio, len(manifest.shards), rows,
                        dict(manifest.tasks))


#: average utterance length of a synthetic corpus before it is built (assumption: espeak-ng sentences and 1-s keyword clips)
SYNTH_UTTERANCE_SECONDS = 2.0


def _synth_estimate(name: str, url: str, synth: dict[str, Any]) -> DatasetFacts:
    from layerlab.data.synth import SynthConfig

    c = SynthConfig.model_validate(synth)
    per = c.read_per_speaker + 10 * c.keyword_repeats + c.unknown_per_speaker + c.silence_per_speaker + c.commands_per_speaker
    per += c.style_sentences_per_speaker * len(c.styles)
    n = c.speakers * per
    seconds = n * SYNTH_UTTERANCE_SECONDS
    return DatasetFacts(name, url, f"synthetic corpus estimate ({SYNTH_UTTERANCE_SECONDS:g} s per utterance, before it is built)", n, seconds,
                        c.speakers, seconds * F.AUDIO_BYTES_PER_SECOND * 1.3)


# ---------------------------------------------------------------------------------------------------------- models
def stage_architecture(plan: Any, params: dict[str, Any]) -> tuple[F.Architecture | None, str]:
    """(architecture, how it was found) of an extract stage's model."""
    spec = params.get("spec")
    control = params.get("random_init_of")
    if spec is None:
        trained = control["model"] if control else params["model"]
        return _trained_architecture(plan, trained)
    return spec_architecture(spec)


def _trained_architecture(plan: Any, model: str) -> tuple[F.Architecture | None, str]:
    m = plan.config.models[model]
    if m.train is None:
        return None, f"{model}: no spec and no training recipe"
    cfg = m.train.config
    doc: dict[str, Any] = {}
    try:
        if isinstance(cfg, dict):
            doc = cfg
        elif isinstance(cfg, str):
            from layerlab.config import read_yaml

            doc = read_yaml(cfg) if storage.is_local(cfg) else {}
    except Exception:  # noqa: BLE001 - an unreadable recipe config is reported by the plan itself
        doc = {}
    model_cfg = doc.get("model") or {}
    if m.train.recipe in ("supervised", "dino"):
        channels = model_cfg.get("channels") or ([1024, 1024, 1024, 1024, 3072] if m.train.recipe == "supervised" else [512, 512, 512, 512, 1536])
        arch = F.ecapa(list(channels), int(model_cfg.get("lin_neurons", 192)))
        return arch, f"ECAPA-TDNN channels {channels} from the {m.train.recipe} recipe config"
    if m.train.recipe == "hubert" and model_cfg:
        return transformer_architecture(f"{model} (hubert recipe)", model_cfg), "transformer shape from the hubert recipe config"
    return None, f"{model}: recipe {m.train.recipe!r} has no cost row"


def transformer_architecture(name: str, cfg: dict[str, Any]) -> F.Architecture:
    """HuBERT/WavLM-style cost from its config: conv front end (per layer: frames/s x C_out x C_in x k x 2) + transformer layers.

    Checked against the counted rows: HuBERT Base 14.3 vs 13.9, Large 36.9 vs 36.0 GFLOP per audio second.
    """
    conv = eval(str(cfg.get("conv_feature_layers", "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2")), {"__builtins__": {}})  # noqa: S307 - a tuple list literal
    rate, c_in, flops = 16000.0, 1, 0.0
    for c_out, k, s in conv:
        rate /= s
        flops += rate * c_out * c_in * k * 2
        c_in = c_out
    d, f, n = int(cfg.get("encoder_embed_dim", 768)), int(cfg.get("encoder_ffn_embed_dim", 3072)), int(cfg.get("encoder_layers", 12))
    flops += rate * c_in * d * 2 + rate * d * (d // max(1, int(cfg.get("conv_pos_groups", 16)))) * int(cfg.get("conv_pos", 128)) * 2
    flops += n * rate * 2 * (4 * d * d + 2 * d * f) + n * 4 * (4 * rate) ** 2 * d / 4  # attention at a 4-s utterance
    params = n * (4 * d * d + 2 * d * f) + sum(co * ci * k for (co, k, _), ci in zip(conv, [1] + [c for c, _, _ in conv]))
    return F.Architecture(name, tuple(F.Layer(f"hidden_{i}", d, rate) for i in range(n + 1)), int(params), flops, "transformer formula")


def spec_architecture(spec: str) -> tuple[F.Architecture | None, str]:
    """(architecture, how) of a model spec: the cost table by name, else described by loading it (local, small)."""
    if spec.startswith("random:"):
        from layerlab.models.random_init import parse_random

        _, inner = parse_random(spec[len("random:"):], spec)
        return spec_architecture(inner)
    prefix, _, arg = spec.partition(":")
    key = arg if prefix in ("s3prl", "hf", "speechbrain") else spec
    if key in F.SPEC_ARCHITECTURES:
        return F.ARCHITECTURES[F.SPEC_ARCHITECTURES[key]], "cost table"
    return _from_checkpoint_config(spec) or _described(spec)


@functools.lru_cache(maxsize=64)
def _from_checkpoint_config(spec: str) -> tuple[F.Architecture, str] | None:
    """A local s3prl WavLM/HuBERT or layerlab ECAPA checkpoint's architecture from its config (memory-mapped: weights not read)."""
    from pathlib import Path

    prefix, _, arg = spec.partition(":")
    name, _, url = arg.partition(":") if prefix == "s3prl" else ("", "", arg if prefix == "ckpt" else "")
    if not url or not storage.is_local(url) or not Path(url.removeprefix("file://")).is_file():
        return None
    try:
        from layerlab.models.formats import detect_format
        from layerlab.models.preflight import open_checkpoint

        ckpt = open_checkpoint(Path(url.removeprefix("file://")), "checkpoint")
        fmt = {"wavlm_local": "s3prl-wavlm", "hubert_local": "s3prl-hubert"}.get(name) or detect_format(ckpt, url)
        if fmt in ("s3prl-wavlm", "s3prl-hubert"):
            cfg, weights = (ckpt["cfg"], ckpt["model"]) if fmt == "s3prl-wavlm" else (ckpt["model_cfg"], ckpt["model_weight"])
            arch = transformer_architecture(Path(url).stem, dict(cfg))
            params = sum(int(t.numel()) for t in weights.values())
            return F.Architecture(arch.name, arch.layers, params, arch.flops_per_second, arch.source), f"{fmt} checkpoint config"
        if fmt == "layerlab-ecapa-v1":
            cfg = dict(ckpt["config"])
            return F.ecapa(list(cfg.get("channels", [1024, 1024, 1024, 1024, 3072])), int(cfg.get("lin_neurons", 192))), "ECAPA checkpoint config"
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is the plan's problem; fall back to loading it
        return None
    return None


@functools.lru_cache(maxsize=64)
def _described(spec: str) -> tuple[F.Architecture | None, str]:
    """Load a local model on the CPU, read its layers and count a 1-s forward's FLOPs (small local checkpoints, shipped specs)."""
    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from layerlab.models import load

        model = load(spec, device="cpu")
        layers = tuple(F.Layer(n, int(d), None if r is None else float(r)) for n, d, r in zip(model.layer_names, model.dims, model.frame_rates))
        wav = torch.zeros(1, model.sample_rate)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(wav, torch.tensor([wav.shape[1]]))
        return F.Architecture(spec, layers, int(model.num_parameters), float(counter.get_total_flops()), "described by loading (1-s forward)"), "loaded"
    except Exception as exc:  # noqa: BLE001 - an unloadable spec is the plan's problem; the cost model only notes it
        return None, f"{spec}: not in the cost table and not loadable here ({type(exc).__name__})"


# ---------------------------------------------------------------------------------------------------------- selections
@dataclass
class Stored:
    """What a cache's frames tier holds: per utterance seconds (exact) or per (partition, split) totals (declared)."""

    seconds: dict[str, float] = field(default_factory=dict)  # id -> stored seconds (crops applied)
    by_split: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # (partition, split) -> (utterances, seconds)
    all_utterances: bool = False
    purposes: list[str] = field(default_factory=list)

    def utterances(self, facts: DatasetFacts) -> float:
        if self.all_utterances:
            return float(facts.utterances)
        return float(len(self.seconds)) if self.seconds else sum(u for u, _ in self.by_split.values())

    def total_seconds(self, facts: DatasetFacts) -> float:
        if self.all_utterances:
            return facts.seconds
        return float(sum(self.seconds.values())) if self.seconds else sum(s for _, s in self.by_split.values())


def stored_frames(facts: DatasetFacts, rules: dict[str, Any] | None) -> Stored:
    """What the plan's frames rules store for one dataset (exact from rows, else from the declared split sizes)."""
    if not rules:
        return Stored()
    if rules.get("all"):
        return Stored(all_utterances=True, purposes=["every utterance (a consumer reads all of them)"])
    if facts.rows is not None:
        from layerlab.data.selection import SampleError
        from layerlab.study.frames import resolve_selection

        try:
            sel = resolve_selection(rules, facts.rows, facts.tasks, facts.url)
        except SampleError:  # the CKA stages report their sample's problem; price the rest
            sel = resolve_selection({**rules, "cka": None}, facts.rows, facts.tasks, facts.url)
        if sel is None:
            return Stored(all_utterances=True)
        secs = (facts.rows["num_samples"] / 16000.0).to_dict()
        return Stored({u: (c[1] if c is not None else float(secs[u])) for u, c in sel.ids.items()}, purposes=sel.purposes)
    return _declared_stored(facts, rules)


def _split_size(facts: DatasetFacts, task: str | None, split: str, derive_dev: float | None = None) -> tuple[str, F.SplitSize] | None:
    corpus = facts.corpus
    if corpus is None:
        return None
    part = corpus.task_partition.get(task or "") or (next(iter(corpus.partitions)) if corpus.partitions else None)
    if part is None or part not in corpus.partitions:
        return None
    splits = corpus.partitions[part]
    if split in splits:
        if split == "train" and "dev" not in splits and derive_dev:  # the probe carves dev speakers out of train
            t = splits["train"]
            return part, F.SplitSize(int(t.utterances * (1 - derive_dev)), t.hours * (1 - derive_dev), int(t.speakers * (1 - derive_dev)))
        return part, splits[split]
    if split == "dev" and "train" in splits and derive_dev:
        t = splits["train"]
        return part, F.SplitSize(int(t.utterances * derive_dev), t.hours * derive_dev, max(1, int(t.speakers * derive_dev)))
    return None


def crop_keep(facts: DatasetFacts, crop: float) -> float:
    """Expected share of an utterance's seconds a ``crop``-second crop keeps (lengths = shortest + exponential; exact with rows)."""
    if facts.rows is not None:
        secs = facts.rows["num_samples"] / 16000.0
        return float(secs.clip(upper=crop).sum() / max(secs.sum(), 1e-9))
    corpus = facts.corpus
    mean = corpus.mean_seconds if corpus else facts.seconds / max(1, facts.utterances)
    low = corpus.min_seconds if corpus else 0.0
    if crop <= low:
        return crop / max(mean, 1e-9)
    scale = max(mean - low, 1e-9)
    return (low + scale * (1 - math.exp(-(crop - low) / scale))) / max(mean, 1e-9)


def _declared_stored(facts: DatasetFacts, rules: dict[str, Any]) -> Stored:
    from layerlab.probe import ProbeConfig

    out = Stored()

    def put(part: str, split: str, utt: float, secs: float, why: str) -> None:
        have = out.by_split.get((part, split), (0.0, 0.0))
        out.by_split[(part, split)] = (max(have[0], utt), max(have[1], secs))  # nested seeded samples: the larger covers the smaller
        out.purposes.append(why)

    for probe in rules.get("probes", []):
        cfg = ProbeConfig.model_validate(probe.get("config") or {})
        derive = cfg.asv.dev_speaker_fraction if probe["task"] == "asv" else cfg.derived_dev_fraction
        for split, limit in (("train", cfg.max_train_utterances), ("dev", cfg.max_dev_utterances), ("test", None)):
            found = _split_size(facts, probe["task"], split, derive)
            if found is None:
                if split == "train":  # no declared splits: every utterance (an upper bound)
                    put("all", "all", facts.utterances, facts.seconds, f"{probe['task']}: every utterance (no declared splits)")
                continue
            part, size = found
            n = min(size.utterances, limit) if limit else size.utterances
            secs = 3600.0 * size.hours * n / max(1, size.utterances)
            crop = probe.get("crop_seconds") if split == "train" else None
            if crop:
                secs *= crop_keep(facts, float(crop))
            put(part, split, n, secs, f"{probe['task']} {split}: {n:,} utterances" + (f" as {crop:g}-s crops" if crop else ""))
    sample = rules.get("cka")
    if sample:
        found = _split_size(facts, sample.get("split_task"), sample.get("split") or "test") if sample.get("split") else None
        if found is None:
            n = min(facts.utterances, sample.get("max_utterances") or facts.utterances)
            put("all", "cka", n, facts.seconds * n / max(1, facts.utterances), f"CKA sample: {n:,} utterances")
        else:
            part, size = found
            n = min(size.utterances, sample.get("max_utterances") or size.utterances)
            put(part, str(sample.get("split")), n, 3600.0 * size.hours * n / max(1, size.utterances), f"CKA sample: {n:,} utterances of {sample.get('split')}")
    return out


def frames_bytes(arch: F.Architecture, seconds: float, utterances: float, compression: str) -> float:
    """On-disk bytes of a frames tier holding ``seconds`` of audio in ``utterances`` rows."""
    raw = arch.frames_bytes_per_second() * seconds + arch.utterance_layer_bytes() * utterances
    return raw * F.FRAMES_COMPRESSION.get(compression, 1.0) + F.FRAMES_ROW_OVERHEAD * utterances * (1 + len(arch.layers) / 8)


def pooled_bytes(arch: F.Architecture, utterances: float) -> float:
    """On-disk bytes of the pooled tier (float32 mean and std per layer and utterance)."""
    return utterances * (arch.pooled_bytes_per_utterance() * arch.pooled_compression + F.POOLED_ROW_OVERHEAD)


# ---------------------------------------------------------------------------------------------------------- estimate
@dataclass
class _Ctx:
    plan: Any
    facts: dict[str, DatasetFacts]
    archs: dict[tuple[str, str], tuple[F.Architecture | None, str]] = field(default_factory=dict)  # (dataset, model) -> architecture
    stored: dict[tuple[str, str], Stored] = field(default_factory=dict)  # (dataset, model) -> frames its cache stores
    compression: dict[tuple[str, str], str] = field(default_factory=dict)  # (dataset, model) -> frames tier codec
    costs: dict[str, StageCost] = field(default_factory=dict)

    @property
    def nodes(self) -> Any:
        return self.plan.config.nodes


def estimate_plan(plan: Any, facts: dict[str, DatasetFacts] | None = None) -> PlanCost:
    """Every stage's :class:`StageCost`, the budget check and the memory / sample problems (one line each)."""
    ctx = _Ctx(plan, facts if facts is not None else getattr(plan, "facts", None) or dataset_facts(plan))
    problems: list[str] = []
    for stage in plan.order():
        fn = {"corpus": _corpus, "train": _train, "extract": _extract, "probe": _probe, "cka": _cka, "profile": _profile,
              "report": _report}[stage.kind]
        try:
            cost = fn(ctx, stage)
        except _StageProblem as exc:
            problems.append(f"{stage.id}: {exc}")
            cost = StageCost(stage.id, stage.kind, notes=[str(exc)])
        ctx.costs[stage.id] = cost
    problems += _memory_problems(ctx)
    budget, over = _budget(ctx)
    problems += over
    return PlanCost(ctx.costs, problems, budget, {k: v.record() for k, v in ctx.facts.items()})


class _StageProblem(ValueError):
    """A stage the plan cannot run as configured (its message names the number)."""


def _node(ctx: _Ctx, kind: str) -> F.NodeType:
    return F.NODE_TYPES[getattr(ctx.nodes, kind)]


def _gpu_hours(ctx: _Ctx, flops: float, efficiency: float) -> float:
    node = _node(ctx, "gpu")
    return flops / (node.gpu_tflops_fp32 * 1e12 * efficiency) / 3600.0


def _corpus(ctx: _Ctx, stage: Any) -> StageCost:
    facts = ctx.facts[stage.id.split("/", 1)[1]]
    c = StageCost(stage.id, "corpus", "cpu workers", ctx.nodes.cpu, audio_hours=facts.seconds / 3600.0)  # a stage task (study/remote.py)
    source = stage.params.get("source")
    if source in ("synth", "import") and not (facts.source == "manifest"):
        c.written["audio"] = facts.audio_bytes
        c.runs_on = "cpu workers (corpus processes)"
    elif source in ("synth", "import"):
        c.notes.append("built: reused as it is")
    c.notes.append(f"dataset size: {facts.source}")
    return c


def _train(ctx: _Ctx, stage: Any) -> StageCost:
    name = stage.id.split("/", 1)[1]
    data = ctx.facts.get(stage.deps[0].split("/", 1)[1])
    arch, how = _trained_architecture(ctx.plan, name)
    c = StageCost(stage.id, "train", "gpu workers", ctx.nodes.gpu)
    cfg = stage.params.get("config")
    doc: dict[str, Any] = cfg if isinstance(cfg, dict) else {}
    if isinstance(cfg, str) and storage.is_local(cfg) and storage.exists(cfg):
        from layerlab.config import read_yaml

        doc = read_yaml(cfg)
    epochs = int(doc.get("epochs", 10))
    utterances = float(data.utterances if data else 0)
    steps = doc.get("steps_per_epoch")
    batch = int(doc.get("batch_size", 32))
    if stage.params.get("recipe") == "dino":
        g = doc.get("global_seconds", [3.0, 4.0])
        per = int(doc.get("global_crops", 2)) * sum(g) / 2 + int(doc.get("local_crops", 4)) * float(doc.get("local_seconds", 2.0))
    else:
        crop = doc.get("crop_seconds", [3.0, 3.0])
        per = sum(crop) / 2 if isinstance(crop, (list, tuple)) else float(crop)
    examples = float(steps) * batch if steps else utterances
    seconds = epochs * examples * per
    c.audio_hours = seconds / 3600.0
    if arch is None:
        c.notes.append(f"no GPU-hours: {how}")
    else:
        c.flops = seconds * arch.flops_per_second * F.TRAIN_STEP_FORWARDS
        c.gpu_hours = _gpu_hours(ctx, c.flops, F.TRAIN_EFFICIENCY)
        c.written["checkpoints"] = arch.params * 4 * 3 * 2  # weights + Adam moments, latest and best
        c.peak_memory_bytes = F.PROCESS_BASE_BYTES + arch.params * 16
    if data is not None:
        share = examples / max(1.0, utterances) if steps else 1.0
        c.read["audio"] = data.audio_bytes * epochs * min(1.0, share)
    c.notes.append(f"{epochs} epochs x {examples:,.0f} examples x {per:g} s of crops; {how}")
    return c


def extract_members(stage: Any) -> list[dict[str, Any]]:
    """The models an extract stage runs: ``params["members"]`` of a joint group (each like a single stage's params:
    ``model``, ``spec``, ``config``, optional ``random_init_of`` and ``frames``), else the stage's own params."""
    return list(stage.params.get("members") or [stage.params])


def _extract(ctx: _Ctx, stage: Any) -> StageCost:
    """One actor group over the dataset: every member's tiers and side-outputs, one forward each, summed weights and batches.

    A joint group also lists ``params["joint_cka"]``: ``[[model_a, model_b], ...]`` pairs whose joint FeatureCKA state
    (A x A, B x B and A x B blocks of the frame-level layers, or of ``params["layers"][model]``) each shard writes.
    A joint group's member (``params["group"]``) only hands on its group's result: it costs nothing.
    """
    dname = stage.id.split("/")[1]
    facts = ctx.facts[dname]
    params = stage.params
    if "group" in params:
        return StageCost(stage.id, "extract", "(its joint group)", "", notes=[f"extracted by {params['group']}"])
    cfg = params.get("config") or extract_members(stage)[0].get("config", {})
    gpu = float(cfg.get("num_gpus_per_actor", 1.0)) > 0 and cfg.get("device") != "cpu"
    c = StageCost(stage.id, "extract", "gpu workers" if gpu else "cpu workers", ctx.nodes.gpu if gpu else ctx.nodes.cpu,
                  audio_hours=facts.seconds / 3600.0)
    shards = max(1, facts.shards or math.ceil(facts.audio_bytes / (128 * 2**20)))
    # the audio: checksummed (verify) and decoded once per shard, plus the pilot utterances' shards (feature side-outputs)
    feature_sides = any(s.get("estimator", "feature") == "feature" for m in extract_members(stage) for s in (m.get("config") or cfg).get("cka") or [])
    pilot = min(int(cfg.get("pilot_shards", 8)), shards) / shards if feature_sides or params.get("joint_cka") else 0.0
    c.read["audio"] = facts.audio_bytes * (1 + (1 if cfg.get("verify", True) else 0) + pilot)
    if not facts.known:
        c.notes.append(f"dataset size unknown ({facts.source}): bytes and hours not estimated")
    from layerlab.cka.feature_stats import state_bytes_for

    archs: dict[str, F.Architecture] = {}
    configs: dict[str, dict[str, Any]] = {}
    for member in extract_members(stage):
        arch, how = stage_architecture(ctx.plan, member)
        ctx.archs[(dname, member["model"])] = (arch, how)
        if arch is None:
            c.notes.append(f"{member['model']}: no architecture: {how}")
            continue
        mcfg = member.get("config") or cfg  # a joint group's members keep their own tier and side-outputs
        archs[member["model"]], configs[member["model"]] = arch, mcfg
        tier, compression = mcfg.get("tier", "pooled"), str(mcfg.get("compression", "zstd"))
        rules = member.get("frames", params.get("frames"))
        stored = Stored()
        if tier in ("both", "frames"):
            stored = stored_frames(facts, rules) if rules else Stored(all_utterances=True, purposes=["every utterance (no frames selection)"])
        ctx.stored[(dname, member["model"])] = stored
        ctx.compression[(dname, member["model"])] = compression
        if tier in ("both", "pooled"):
            c.written["pooled"] = c.written.get("pooled", 0.0) + pooled_bytes(arch, facts.utterances)
        if tier in ("both", "frames"):
            c.written["frames"] = c.written.get("frames", 0.0) + frames_bytes(arch, stored.total_seconds(facts), stored.utterances(facts), compression)
            share = stored.total_seconds(facts) / max(facts.seconds, 1e-9)
            c.notes.append(f"{member['model']} frames tier: {stored.utterances(facts):,.0f} utterances, {stored.total_seconds(facts) / 3600:,.2f} h "
                           f"({share:.1%} of the audio): " + "; ".join(dict.fromkeys(stored.purposes)))
        for side in mcfg.get("cka") or []:
            dims = [l.dim for l in arch.frame_layers] if not side.get("layers") else [l.dim for l in arch.layers if l.name in side["layers"]]
            _add_state(c, state_bytes_for(dims), sum(dims), arch, facts, shards)
        c.flops += facts.seconds * arch.flops_per_second
        c.notes.append(f"{arch.name}: {arch.params / 1e6:,.1f} M parameters, {arch.flops_per_second / 1e9:,.2f} GFLOP per audio second ({how})")
    layers = params.get("layers") or {}
    for a, b in params.get("joint_cka") or []:
        if a in archs and b in archs:
            da, db = joint_dims(archs[a], layers.get(a)), joint_dims(archs[b], layers.get(b))
            slow = archs[a] if min(l.rate for l in archs[a].frame_layers) <= min(l.rate for l in archs[b].frame_layers) else archs[b]
            _add_state(c, state_bytes_for(da, db, "joint"), sum(da) + sum(db), slow, facts, shards)
    c.gpu_hours = _gpu_hours(ctx, c.flops, F.INFERENCE_EFFICIENCY) if gpu else 0.0
    host, device = actor_memory([(archs[m], configs[m]) for m in archs], c.cka_state_bytes)
    if gpu:
        c.gpu_memory_bytes = device
        c.peak_memory_bytes = host
    else:  # on the CPU the device copy is the host copy: the weights once
        c.peak_memory_bytes = host + device - 4.0 * sum(a.params for a in archs.values())
    return c


def joint_dims(arch: F.Architecture, selection: list[str] | None) -> list[int]:
    """Widths of a model's frame-level layers entering CKA (all, or the named ones)."""
    return [l.dim for l in arch.frame_layers if selection is None or l.name in selection]


def actor_memory(members: list[tuple[F.Architecture, dict[str, Any]]], state_bytes: float) -> tuple[float, float]:
    """(host, device) bytes of one extraction actor running these models (a joint group: several) with ``state_bytes`` of CKA states.

    One process and decode window; each model's weights, a batch of its hidden states and its tier writers' queue add up.
    The models of a group run one after another on each batch, so only one forward pass's transient activations are live
    at a time (the largest), while every model's kept hidden states wait for the joint CKA update.
    """
    if not members:
        return F.PROCESS_BASE_BYTES, 0.0
    cfg = members[0][1]
    weights = sum(a.params * 4.0 for a, _ in members)
    each = [float(m.get("batch_seconds", 40.0)) * a.frames_bytes_per_second() * 2 for a, m in members]  # float32 hidden states
    kept = sum(each)
    row_groups = sum(2 * float(m.get("row_group_mb", 32.0)) * 2**20 * (2 if m.get("tier", "pooled") == "both" else 1) for _, m in members)
    window = float(cfg.get("bucket_window_seconds", 600.0)) * 16000 * 4 * 2
    host = F.PROCESS_BASE_BYTES + weights + window + row_groups + kept * 1.5  # the batch's features copied to the host, fp16 + fp32
    device = weights + kept + max(each) * F.FORWARD_TRANSIENT_FACTOR + 2 * state_bytes
    return host, device


def _add_state(c: StageCost, state: float, width: int, arch: F.Architecture, facts: DatasetFacts, shards: int) -> None:
    """One side-output: its state in memory, one state per shard (+ the merged one) written and the shards' read back once
    (the finished extraction merges them), the Gram update's FLOPs."""
    c.cka_state_bytes += state
    c.written["side_outputs"] = c.written.get("side_outputs", 0.0) + state * (shards + 1)
    c.read["side_outputs"] = c.read.get("side_outputs", 0.0) + state * shards
    rate = min((l.rate for l in arch.frame_layers), default=0.0) or 0.0
    c.flops += facts.seconds * float(rate) * width * width  # the packed Gram update (half a full GEMM)


def _probe(ctx: _Ctx, stage: Any) -> StageCost:
    from layerlab.probe import ProbeConfig
    from layerlab.study.plan import task_tier

    p = stage.params
    key = (p["dataset"], p["model"])
    arch = ctx.archs.get(key, (None, ""))[0]
    facts = ctx.facts[p["dataset"]]
    local = p.get("runner") == "local"
    c = StageCost(stage.id, "probe", "cpu worker (stage task)" if local else "tune workers", ctx.nodes.cpu)
    c.written["results"] = F.PROBE_RESULTS_BYTES
    cfg = ProbeConfig.model_validate(p.get("config") or {})
    trials = int(p.get("tune_samples", 1))
    if arch is None:
        return c
    if task_tier(p["task"]) != "frames":
        c.read["pooled"] = pooled_bytes(arch, facts.utterances)
        c.peak_memory_bytes = F.PROCESS_BASE_BYTES + pooled_bytes(arch, facts.utterances) * 2
        return c
    stored = ctx.stored.get(key, Stored())
    frames_total = frames_bytes(arch, stored.total_seconds(facts), stored.utterances(facts), ctx.compression.get(key, "zstd"))
    per_split = _probe_split_bytes(ctx, facts, stage, arch, stored, frames_total)
    max_epochs, _ = cfg.epochs_for("frames")
    hold = cfg.frames_memory_mb * 2**20
    # Every open of a shard's frames file reads all of it (up to IN_MEMORY_BYTES: read and checksummed in memory; larger:
    # a checksum pass, then the reads), and a split's utterances are spread over the shards, so each split a process
    # reads costs one pass over the files. The stage's own process reads train once (the bound task's scales) and dev
    # and test once (the best trial's evaluation); each trial reads train and dev once, or every epoch when they do not
    # fit frames_memory_mb. Per-layer probes (layers: each/both) add one trial per layer.
    from layerlab.artifacts import IN_MEMORY_BYTES

    shards = max(1, facts.shards or math.ceil(facts.audio_bytes / (128 * 2**20)))
    per_pass = frames_total * (1 if frames_total / shards <= IN_MEMORY_BYTES else 2)
    fits = per_split.get("train", 0.0) + per_split.get("dev", 0.0) <= hold
    n_trials = (trials if p.get("layers") in ("weighted", "both", None) else 0) + (len(arch.layers) if p.get("layers") in ("each", "both") else 0)
    passes = 3 + n_trials * 2 * (1 if fits else max_epochs)
    c.read["frames"] = per_pass * passes
    c.read["pooled"] = pooled_bytes(arch, facts.utterances)  # the probe source opens the pooled tier
    c.read["audio"] = facts.audio_bytes  # labels and splits joined from the source dataset's shards
    c.audio_hours = sum(per_split.values()) / max(arch.frames_bytes_per_second(), 1.0) / 3600.0
    c.peak_memory_bytes = F.PROCESS_BASE_BYTES + min(hold, sum(per_split.values())) * 2.5
    # per value read: the weighted sum (one multiply-add) and the head's projection of the summed frame (hidden per layer width),
    # forward and backward (x 3)
    per_value = 3 * 2 * (1 + cfg.hidden / max(1, len(arch.layers)))
    c.flops = c.read["frames"] / 2 * per_value
    if not local and cfg.gpus_per_trial > 0:
        c.gpu_hours = _gpu_hours(ctx, c.flops, F.TRAIN_EFFICIENCY)
    c.notes.append(f"frames read: {passes} passes over the {frames_total / GB:,.2f} GB of frames files ({n_trials} trial(s), "
                   f"{'in memory' if fits else f'{max_epochs} epochs from the files'}); train "
                   f"{per_split.get('train', 0) / GB:,.2f} GB, dev {per_split.get('dev', 0) / GB:,.2f} GB, test {per_split.get('test', 0) / GB:,.2f} GB")
    return c


def _probe_split_bytes(ctx: _Ctx, facts: DatasetFacts, stage: Any, arch: F.Architecture, stored: Stored, frames_total: float) -> dict[str, float]:
    """Frames bytes of a probe's train, dev and test utterances (what the cache stores for it)."""
    from layerlab.probe import ProbeConfig

    p = stage.params
    cfg = ProbeConfig.model_validate(p.get("config") or {})
    compression = ctx.compression.get((p["dataset"], p["model"]), "zstd")
    if facts.rows is not None and stored.seconds:
        from layerlab.probe import frames_needed
        from layerlab.probe.needs import rows_source

        needed = frames_needed(rows_source(facts.url, facts.rows, facts.tasks), p["task"], cfg) or {}
        return {s: frames_bytes(arch, sum(stored.seconds.get(u, 0.0) for u in ids), sum(1 for u in ids if u in stored.seconds), compression)
                for s, ids in needed.items()}
    if stored.by_split:
        out = {}
        task = p["task"]
        derive = cfg.asv.dev_speaker_fraction if task == "asv" else cfg.derived_dev_fraction
        for split, limit in (("train", cfg.max_train_utterances), ("dev", cfg.max_dev_utterances), ("test", None)):
            found = _split_size(facts, task, split, derive)
            if found is None:
                continue
            part, size = found
            n = min(size.utterances, limit) if limit else size.utterances
            secs = 3600.0 * size.hours * n / max(1, size.utterances)
            rule = next((r for r in _frames_rules(ctx, stage.deps[0], p["model"]).get("probes", []) if r["task"] == task), {})
            if split == "train" and rule.get("crop_seconds"):
                secs *= crop_keep(facts, float(rule["crop_seconds"]))
            out[split] = frames_bytes(arch, secs, n, compression)
        return out
    return {"train": frames_total}  # every utterance stored: an upper bound


def _frames_rules(ctx: _Ctx, extract_id: str, model: str) -> dict[str, Any]:
    """The frames rules of ``model`` in an extract stage (a joint group's member, or the stage itself)."""
    stage = ctx.plan.stages[extract_id]
    for member in extract_members(stage):
        if member.get("model") == model:
            return member.get("frames") or stage.params.get("frames") or {}
    return stage.params.get("frames") or {}


def cka_source(stage: Any) -> str:
    """Where a CKA stage reads from: ``pooled``, ``frames``, ``side_output`` or ``reduction`` (the stage's settings decide)."""
    p = stage.params
    if p.get("source"):
        return str(p["source"])
    if p.get("level") == "utterance":
        return "pooled"
    return "side_output" if p.get("from_side_output") else "reduction"  # frames tiers: the distributed per-shard reduction


def _cka(ctx: _Ctx, stage: Any) -> StageCost:
    p = stage.params
    source = cka_source(stage)
    dname = stage.id.split("/")[1]
    facts = ctx.facts[dname]
    c = StageCost(stage.id, "cka", "cpu workers", ctx.nodes.cpu)  # a stage task on a worker (shard tasks too for a reduction)
    keys = [(dname, m) for m in p.get("models", [])]
    archs = [ctx.archs.get(k, (None, ""))[0] for k in keys]
    if any(a is None for a in archs):
        c.notes.append("an architecture is unknown: not estimated")
        return c
    sample = p.get("sample")
    sample_ids, sample_speakers, sample_seconds = _sample_size(ctx, facts, sample, stage)
    frame_level = p.get("level") == "frame"
    chosen = list(p.get("layers") or []) + [None, None]
    dims = [[l.dim for l in (a.frame_layers if frame_level else a.layers) if chosen[i] is None or l.name in chosen[i]]  # type: ignore[union-attr]
            for i, a in enumerate(archs)]
    from layerlab.cka.feature_stats import state_bytes_for

    state = state_bytes_for(dims[0], dims[1], "joint") if len(dims) == 2 else state_bytes_for(dims[0])
    c.cka_state_bytes = state
    width = sum(sum(d) for d in dims)
    rate = min(l.rate for a in archs for l in a.frame_layers) if frame_level else None  # type: ignore[union-attr]
    if frame_level:
        c.flops = sample_seconds * float(rate or 0) * width * width
    else:
        c.flops = sample_ids * width * width
    c.audio_hours = sample_seconds / 3600.0
    if source == "pooled":
        c.read["pooled"] = sum(pooled_bytes(a, facts.utterances) for a in archs)  # type: ignore[arg-type]
    elif source in ("frames", "reduction"):
        for k, a in zip(keys, archs):
            c.read["frames"] = c.read.get("frames", 0.0) + _frames_read_for_sample(ctx, facts, k, a, sample)  # type: ignore[arg-type]
    elif source == "side_output":
        shards = max(1, facts.shards or math.ceil(facts.audio_bytes / (128 * 2**20)))
        c.read["side_outputs"] = state * shards
    groups = 1
    if p.get("bootstrap"):
        unit = p.get("group_by", "speaker")
        if source == "side_output":
            groups = max(2, facts.shards or math.ceil(facts.audio_bytes / (128 * 2**20)))
        elif unit == "speaker":
            groups = max(2, min(int(p.get("groups") or sample_speakers), sample_speakers or int(p.get("groups") or 2)))
        elif unit == "utterance":
            groups = max(2, sample_ids)
        else:
            groups = max(2, facts.shards or 2)
    halves = 1 if sample and sample.get("convergence", True) else 0
    c.peak_memory_bytes = F.PROCESS_BASE_BYTES + state * (groups + halves + F.CKA_EXTRA_STATES)
    n_entries = sum(len(d) for d in dims) ** 2
    c.written["results"] = n_entries * F.CKA_ENTRY_BYTES + (n_entries * groups * F.CKA_REPLICATE_BYTES if p.get("bootstrap") else 0) + 2e5
    c.notes.append(f"source {source}; state {state / GB:,.2f} GB x ({groups} group(s) + {halves + F.CKA_EXTRA_STATES}); sample "
                   f"{sample_ids:,.0f} utterances, {sample_speakers} speakers, {sample_seconds / 3600:,.2f} h")
    return c


def _sample_size(ctx: _Ctx, facts: DatasetFacts, sample: dict[str, Any] | None, stage: Any) -> tuple[float, int, float]:
    """(utterances, speakers, seconds) of a CKA stage's sample (the whole dataset without one); sample problems raise."""
    if not sample:
        return float(facts.utterances), facts.speakers, facts.seconds
    if facts.rows is not None:
        from layerlab.data.selection import SampleError
        from layerlab.study.frames import cka_sample

        try:
            ids, _, _ = cka_sample(facts.rows, sample, "cka")
        except SampleError as exc:
            raise _StageProblem(str(exc).removeprefix("cka: ") + f" ({facts.name})") from None
        secs = (facts.rows.loc[ids, "num_samples"] / 16000.0).sum()
        return float(len(ids)), int(facts.rows.loc[ids, "speaker"].nunique()), float(secs)
    found = _split_size(facts, sample.get("split_task"), sample["split"]) if sample.get("split") else None
    if found is None:
        n = sample.get("max_utterances") or facts.utterances
        if n > facts.utterances and facts.known:
            raise _StageProblem(f"max_utterances {n} exceeds the {facts.utterances} utterances of {facts.name}")
        return float(n), facts.speakers, facts.seconds * n / max(1, facts.utterances)
    _, size = found
    n = sample.get("max_utterances") or size.utterances
    if n > size.utterances:
        raise _StageProblem(f"max_utterances {n} exceeds the {size.utterances} utterances of split {sample['split']!r} of {facts.name} (declared)")
    speakers = min(size.speakers, n) if size.speakers else 0
    if size.speakers and speakers < 2:
        raise _StageProblem(f"the CKA sample holds {speakers} speaker(s); speaker-grouped estimates need at least 2")
    return float(n), speakers, 3600.0 * size.hours * n / max(1, size.utterances)


def _frames_read_for_sample(ctx: _Ctx, facts: DatasetFacts, key: tuple[str, str], arch: F.Architecture, sample: dict[str, Any] | None) -> float:
    """Bytes of the frames files a CKA over ``sample`` opens: every shard holding a sample utterance is read whole."""
    stored = ctx.stored.get(key, Stored())
    compression = ctx.compression.get(key, "zstd")
    total = frames_bytes(arch, stored.total_seconds(facts), stored.utterances(facts), compression)
    if not sample:
        return total
    if facts.rows is not None and stored.seconds:
        from layerlab.study.frames import cka_sample

        ids, _, _ = cka_sample(facts.rows, sample, "cka")
        shards = set(facts.rows.loc[ids, "shard"])
        in_shards = facts.rows.index[facts.rows["shard"].isin(shards)]
        held = [u for u in in_shards if u in stored.seconds]
        return frames_bytes(arch, sum(stored.seconds[u] for u in held), len(held), compression)
    if stored.by_split:
        part = sample.get("split") or "cka"
        got = [v for (pt, sp), v in stored.by_split.items() if sp == part]
        if got:
            utt, secs = max(got)
            return frames_bytes(arch, secs, utt, compression)
    return total


def _profile(ctx: _Ctx, stage: Any) -> StageCost:
    """A training-free profile: two passes over the model's cache (frames tier for frame and span references, else pooled)."""
    from layerlab.study.plan import profile_needs_frames

    p = stage.params
    key = (p["dataset"], p["model"])
    arch = ctx.archs.get(key, (None, ""))[0]
    facts = ctx.facts[p["dataset"]]
    c = StageCost(stage.id, "profile", "cpu worker (stage task)", ctx.nodes.cpu)
    c.written["results"] = F.PROBE_RESULTS_BYTES
    if arch is None:
        c.notes.append("the architecture is unknown: not estimated")
        return c
    c.read["pooled"] = 2 * pooled_bytes(arch, facts.utterances)
    if any(profile_needs_frames(r) for r in p.get("references", [])):
        stored = ctx.stored.get(key, Stored())
        c.read["frames"] = 2 * frames_bytes(arch, stored.total_seconds(facts), stored.utterances(facts), ctx.compression.get(key, "zstd"))
        c.audio_hours = stored.total_seconds(facts) / 3600.0
    width = sum(layer.dim for layer in arch.layers)
    c.peak_memory_bytes = F.PROCESS_BASE_BYTES + 8 * width * width  # one float64 second-moment block per layer, at most
    return c


def _report(ctx: _Ctx, stage: Any) -> StageCost:
    c = StageCost(stage.id, "report", "cpu workers", ctx.nodes.cpu)
    results = sum(x.written.get("results", 0.0) for x in ctx.costs.values())
    c.read["results"] = results
    c.written["results"] = 5e6 + 0.1 * results
    return c


# ---------------------------------------------------------------------------------------------------------- checks
def _memory_problems(ctx: _Ctx) -> list[str]:
    """A stage whose estimated peak exceeds what its node gives one actor (host memory; GPU memory for GPU stages)."""
    out = []
    for c in ctx.costs.values():
        if not c.node:
            continue
        node = F.NODE_TYPES[c.node]
        limit = node.memory_bytes * F.ACTOR_MEMORY_SHARE
        if c.peak_memory_bytes > limit:
            what = "joint group" if c.kind == "extract" and ctx.plan.stages[c.id].params.get("members") else "stage"
            out.append(f"{c.id}: peak memory {c.peak_memory_bytes / GB:,.1f} GB exceeds the {limit / GB:,.1f} GB an actor gets on a "
                       f"{node.name} ({node.memory_gib:g} GiB x {F.ACTOR_MEMORY_SHARE:.0%}); the {what} cannot fit"
                       + (f" (CKA state {c.cka_state_bytes / GB:,.2f} GB per group)" if c.kind == "cka" else ""))
        if c.gpu_memory_bytes and node.gpus and c.gpu_memory_bytes > node.gpu_memory_bytes * 0.95:
            joint = c.kind == "extract" and ctx.plan.stages[c.id].params.get("members")
            out.append(f"{c.id}: GPU memory {c.gpu_memory_bytes / GB:,.1f} GB exceeds the {node.gpu_memory_gib:g} GiB of a {node.gpu} "
                       f"({node.name})" + (f"; the joint group cannot fit (CKA states {c.cka_state_bytes / GB:,.2f} GB): split it"
                                           if joint else "; lower batch_seconds"))
    return out


def _budget(ctx: _Ctx) -> tuple[dict[str, Any], list[str]]:
    """The budget block with the plan's totals, and one problem per broken limit naming the stage that crosses it."""
    budget = ctx.plan.config.budget
    costs = list(ctx.costs.values())
    measures = {
        "stored_tb": (lambda c: c.stored_bytes / TB, "TB stored"),
        "read_tb": (lambda c: c.read_bytes / TB, "TB read"),
        "cka_read_tb": (lambda c: c.read_bytes / TB if c.kind == "cka" else 0.0, "TB read by CKA stages"),
        "gpu_hours": (lambda c: c.gpu_hours, "GPU-hours"),
    }
    record: dict[str, Any] = {}
    problems = []
    for key, (value, unit) in measures.items():
        total = sum(value(c) for c in costs)
        limit = getattr(budget, key) if budget is not None else None
        record[key] = {"plan": round(total, 4), "limit": limit, "ok": limit is None or total <= limit}
        if limit is None or total <= limit:
            continue
        running = 0.0
        for c in costs:
            running += value(c)
            if running > limit:
                problems.append(f"{c.id}: budget {key} {limit:g} broken: the plan reaches {running:,.3f} {unit} at this stage "
                                f"(this stage {value(c):,.3f}; whole plan {total:,.3f})")
                break
    return record, problems


# ---------------------------------------------------------------------------------------------------------- choices
#: fixed crops replace per-epoch random crops (less augmentation): the plan takes that trade only when it saves at least
#: this share of the training frames and this many audio hours (about 70 GB of frames for the paper's eight models)
CROPS_MIN_SAVING = 0.10
CROPS_MIN_HOURS = 2.0


def prefer_crops(facts: DatasetFacts, crop: float, train_utterances: int | None = None) -> tuple[bool, str]:
    """Whether storing fixed crops pays (saves >= CROPS_MIN_SAVING of the training frames and >= CROPS_MIN_HOURS), and why."""
    keep = crop_keep(facts, crop)
    n = min(train_utterances or facts.utterances, facts.utterances)
    saved = n * facts.seconds / max(1, facts.utterances) * (1 - keep) / 3600.0
    pays = (1 - keep) >= CROPS_MIN_SAVING and saved >= CROPS_MIN_HOURS
    return pays, f"fixed {crop:g}-s crops keep {keep:.1%} of the training audio's frames ({saved:,.2f} h saved)"


def render(cost: PlanCost, width: int = 0) -> list[str]:
    """The cost table for ``--dry-run``: one line per stage, totals, budget, assumptions."""
    def gb(x: float) -> str:
        return f"{x / GB:,.1f}" if x else "-"

    width = width or max((len(i) for i in cost.stages), default=10)
    head = (f"{'stage'.ljust(width)}  {'runs on':<24} {'audio h':>9} {'frames GB':>10} {'pooled GB':>10} {'side GB':>9} "
            f"{'written GB':>11} {'read GB':>10} {'GPU-h':>8} {'peak mem GB':>11}")
    lines = ["cost (estimates; GB = 1e9 bytes):", head]
    for c in cost.stages.values():
        lines.append(f"{c.id.ljust(width)}  {c.runs_on[:24]:<24} {c.audio_hours:>9,.1f} {gb(c.written.get('frames', 0)):>10} "
                     f"{gb(c.written.get('pooled', 0)):>10} {gb(c.written.get('side_outputs', 0)):>9} {gb(c.stored_bytes):>11} "
                     f"{gb(c.read_bytes):>10} {c.gpu_hours:>8,.1f} {c.peak_memory_bytes / GB:>11,.1f}")
    t = cost.totals
    w, r = t["written_by_tier"], t["read_by_tier"]
    lines.append(f"{'total'.ljust(width)}  {'':<24} {t['audio_hours']:>9,.1f} {gb(w.get('frames', 0)):>10} {gb(w.get('pooled', 0)):>10} "
                 f"{gb(w.get('side_outputs', 0)):>9} {gb(t['stored_bytes']):>11} {gb(t['read_bytes']):>10} {t['gpu_hours']:>8,.1f} "
                 f"{t['peak_memory_bytes'] / GB:>11,.1f}")
    lines.append(f"totals: stored {t['stored_bytes'] / TB:,.3f} TB (frames {w.get('frames', 0) / TB:,.3f}, pooled {w.get('pooled', 0) / TB:,.3f}, "
                 f"side-outputs {w.get('side_outputs', 0) / TB:,.3f}, audio {w.get('audio', 0) / TB:,.3f}); read {t['read_bytes'] / TB:,.3f} TB "
                 f"(CKA stages {t['cka_read_bytes'] / TB:,.3f}, probes {t['probe_read_bytes'] / TB:,.3f}, audio {r.get('audio', 0) / TB:,.3f}); "
                 f"{t['gpu_hours']:,.1f} GPU-hours")
    for key, rec in cost.budget.items():
        if rec.get("limit") is not None:
            lines.append(f"budget {key}: plan {rec['plan']:,.3f} of {rec['limit']:g} ({'ok' if rec['ok'] else 'OVER'})")
    lines.append("datasets: " + "; ".join(f"{k} {v['hours']:,.1f} h ({v['source']})" for k, v in cost.datasets.items()))
    lines += [f"assumption: {a}" for a in F.assumptions()]
    return lines

"""Typed study configuration: datasets x models x probe tasks x CKA comparisons (one YAML file).

Every section forbids unknown keys; :func:`load_study_config` turns validation errors into one
line ``<file>: <key path>: <what> (allowed: ...)`` (nested probe and inline recipe configs included).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from layerlab.cka.measure_registry import MeasureOptions, moment_names, parse_measures
from layerlab.config import ConfigError, format_validation, read_yaml

Family = Literal["speech_ssl", "speaker", "baseline", "other"]
Level = Literal["frame", "utterance"]
Estimator = Literal["biased", "debiased", "minibatch"]
ProbeLayers = Literal["weighted", "each", "both"]

#: Probe task kinds that need every frame (the frames tier); the others train on pooled means.
FRAME_TASKS = frozenset({"pr", "pr-frame", "asr", "asv"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImportSource(_Strict):
    """Import a dataset from its own layout with one of `layerlab corpus import`'s recipes."""

    kind: str = Field(..., description="importer kind, e.g. librispeech, voxceleb1, speechcommands, fluent, iemocap")
    src: str = Field(..., description="the dataset's root (path or URL)")
    options: dict[str, Any] = Field(default_factory=dict, description="recipe options (see `layerlab corpus import --help`)")
    max_shard_bytes: int = Field(128 * 1024 * 1024, ge=64 * 1024)


class DatasetConfig(_Strict):
    """Exactly one of: a synthetic corpus, an import, or an existing audio-shard dataset URL."""

    synth: dict[str, Any] | None = Field(None, description="SynthConfig fields (`layerlab corpus synth`)")
    import_: ImportSource | None = Field(None, alias="import")
    path: str | None = Field(None, description="an existing audio-shard dataset (manifest.json at its root)")
    tasks: list[str] | None = Field(None, description="probe only these tasks on this dataset (default: every task it offers)")
    corpus: str | None = Field(None, description="a known corpus whose declared sizes (hours, utterances, speakers per split) the "
                               "plan's cost model uses before the data can be read (layerlab.study.cost_facts.CORPORA)")
    hours: float | None = Field(None, gt=0, description="declared audio hours, for the cost model of a dataset it cannot read yet")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_source(self) -> "DatasetConfig":
        given = [k for k, v in (("synth", self.synth), ("import", self.import_), ("path", self.path)) if v is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of synth, import, path (got {given or 'none'})")
        if self.synth is not None:
            from layerlab.data.synth import SynthConfig

            SynthConfig.model_validate(self.synth)  # fail at load time, naming the synth field
        if self.corpus is not None:
            from layerlab.study.cost_facts import CORPORA

            if self.corpus not in CORPORA:
                raise ValueError(f"corpus: unknown corpus {self.corpus!r}; known: {', '.join(sorted(CORPORA))} (or give hours:)")
        return self

    @property
    def source(self) -> str:
        """``synth``, ``import`` or ``path``."""
        return "synth" if self.synth is not None else "import" if self.import_ is not None else "path"


class TrainSpec(_Strict):
    """Train this model in the study with a recipe from `layerlab.train` (stream T's recipes)."""

    recipe: str = Field(..., description="recipe name, e.g. ecapa_supervised, ecapa_dino, hubert_mini")
    config: str | dict[str, Any] | None = Field(None, description="recipe config: a YAML path/URL or inline mapping")
    data: str | None = Field(None, description="study dataset to train on (default: the first dataset)")


class ModelConfig(_Strict):
    """A model to analyse: a spec string (hub name, local checkpoint) or a recipe trained in the study."""

    spec: str | None = Field(None, description="model spec, e.g. s3prl:wavlm_base_plus, hf:/dir, ckpt:/m.pt, ge2e, fbank")
    train: TrainSpec | None = None
    family: Family | None = Field(None, description="speech_ssl | speaker | baseline | other (default: from the spec or recipe)")
    label: str | None = Field(None, description="display name in the report (default: the model's key)")
    extract: dict[str, Any] = Field(default_factory=dict, description="ExtractConfig overrides for this model")
    random_init: bool = Field(False, description="random-initialisation control: the architecture of spec (or of the model "
                              "named by control_of, trained ones included) with seeded random weights")
    seed: int | None = Field(None, ge=0, description="seed of the random weights (random_init only; default 0)")
    control_of: str | None = Field(None, description="random_init: the study model this is the control of (its spec or trained "
                                   "checkpoint gives the architecture; default: the model with the same spec, if any)")

    @model_validator(mode="after")
    def _one_source(self) -> "ModelConfig":
        if not self.random_init and (self.seed is not None or self.control_of is not None):
            raise ValueError(f"{'seed' if self.seed is not None else 'control_of'} is only for random_init: true (a random-initialisation control)")
        if self.random_init and self.train is not None:
            raise ValueError("random_init: a control is not trained; give control_of: NAME of the trained model instead of train")
        if self.random_init and self.control_of is not None and self.spec is not None:
            raise ValueError("random_init: give either spec or control_of (the control takes that model's spec or checkpoint)")
        if not (self.random_init and self.control_of is not None) and (self.spec is None) == (self.train is None):
            raise ValueError("give exactly one of spec (an existing model) or train (a recipe trained in the study)")
        if self.spec is not None:
            from layerlab.models.registry import parse_spec

            parse_spec(self.spec)  # spec syntax: UnknownModelSpec (a ValueError) names the spec and the prefixes
            if self.random_init:
                parse_spec(self.extract_spec() or "")  # e.g. a control of fbank/mfcc/planted: no weights to randomise
        return self

    def extract_spec(self) -> str | None:
        """The spec extraction loads: ``spec``, or its random-init control spec; None for trained models and controls of them."""
        if self.spec is None:
            return None
        if not self.random_init:
            return self.spec
        from layerlab.models.random_init import random_spec

        return random_spec(self.spec, self.seed or 0)

    def resolved_family(self) -> str:
        """The model family used by the findings (explicit, else inferred from the spec or recipe)."""
        if self.family:
            return self.family
        key = (self.spec or (self.train.recipe if self.train else "")).lower()
        if key in ("fbank", "mfcc"):
            return "baseline"
        if any(k in key for k in ("ecapa", "dino", "ge2e", "speechbrain", "xvector", "speaker")):
            return "speaker"
        if any(k in key for k in ("hubert", "wavlm", "wav2vec", "data2vec", "s3prl", "hf:")):
            return "speech_ssl"
        return "other"


class ProbeSettings(_Strict):
    """How one task is probed (passed to `layerlab.probe.run_probe`)."""

    layers: ProbeLayers = Field("both", description="weighted (learned layer sum), each (one probe per layer), both")
    tune_samples: int = Field(1, ge=1, description="Ray Tune trials per probe (learning-rate search)")
    scheduler: Literal["asha", "fifo"] | None = Field(None, description="Tune scheduler; None = none")
    runner: Literal["tune", "local"] = Field("tune", description="tune: a Ray Tune sweep per probe (trials spread over the cluster, "
                                             "resumable); local: trials one after another in the study driver (small probes)")
    config: dict[str, Any] = Field(default_factory=dict, description="ProbeConfig fields (epochs, lr, batch size...)")
    seed: int = 0
    store: Literal["auto", "full", "crops"] = Field(
        "auto", description="how a frames probe's training utterances are stored: full (whole), crops (one fixed, seeded crop of the "
        "task's crop length each: ASV's 8 s), auto (the plan picks the cheaper by the cost model)")


class TaskEntry(ProbeSettings):
    """One probe task with its own settings."""

    task: str = Field(..., pattern=r"^[a-z0-9_-]+$")
    models: list[str] | None = Field(None, description="probe only these study models (default: every model)")


class ProbeSection(_Strict):
    """Probe tasks: ``all`` (every task each dataset supports) or a list of names / entries."""

    tasks: Literal["all"] | list[str | TaskEntry] = "all"
    defaults: ProbeSettings = Field(default_factory=ProbeSettings)
    datasets: list[str] | None = Field(None, description="datasets to probe on (default: all)")

    def entries(self, available: list[str]) -> list[TaskEntry]:
        """Task entries resolved against the tasks a dataset offers (``all``) and the defaults."""
        base = self.defaults.model_dump()
        if self.tasks == "all":
            return [TaskEntry(task=t, **base) for t in available]
        out = []
        for t in self.tasks:
            if isinstance(t, str):
                out.append(TaskEntry(task=t, **base))
                continue
            own = t.model_dump(exclude_unset=True)
            if "config" in own:  # a task's config refines the defaults' config key by key (nested blocks too), never drops it
                own["config"] = deep_merge(base.get("config") or {}, own["config"] or {})
            out.append(TaskEntry(**{**base, **own}))
        return out


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; nested dicts merge key by key."""
    out = dict(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class CKAComparison(_Strict):
    """One family of CKA comparisons (within each model, or across pairs)."""

    levels: list[Level] = Field(default_factory=lambda: ["utterance"], min_length=1)
    estimator: Estimator = "biased"
    bootstrap: int = Field(0, ge=0, description="> 0: 95% CIs by resampling groups (the CKA engine's leave-one-group-out jackknife); 0: none")
    group_by: Literal["shard", "speaker", "utterance"] = Field("speaker", description="resampling unit of the CIs")
    groups: int | None = Field(None, ge=2, description="group_by speaker: deal the speakers (seeded) into this many jackknife groups "
                               "of whole speakers; memory holds one CKA state per group (None: one group per speaker)")
    measures: list[str] | None = Field(None, min_length=1, description="the similarity measures of these comparisons (None: cka.measures)")

    @field_validator("measures")
    @classmethod
    def _known_measures(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else parse_measures(value)

    @model_validator(mode="after")
    def _bootstrap_estimator(self) -> "CKAComparison":
        if self.bootstrap and self.estimator == "minibatch":
            raise ValueError("bootstrap: CIs need the biased or debiased estimator (minibatch states cannot be regrouped)")
        return self


class CKAAcross(CKAComparison):
    """Across-model comparisons: ``all`` pairs or an explicit list of [model_a, model_b]."""

    pairs: Literal["all"] | list[tuple[str, str]] = "all"
    joint: bool = Field(True, description="frame level: extract the compared models of a dataset in joint groups (one actor each) "
                        "so a pair inside a group comes from its joint side-output states; other pairs (and speaker/utterance "
                        "CIs) read the frames tier with the distributed per-shard reduction")
    joint_memory_gb: float | None = Field(None, gt=0, description="memory a joint group's actor may use (models, batches, CKA "
                                          "states); default: what an actor gets on the GPU node type (nodes.gpu)")


class CKASection(_Strict):
    """CKA within each model and across chosen pairs of models (per dataset), on a declared sample of utterances, and the
    similarity measures computed beside it."""

    within: CKAComparison | None = Field(default_factory=CKAComparison)
    across: CKAAcross | None = Field(default_factory=CKAAcross)
    datasets: list[str] | None = Field(None, description="datasets to compare on (default: all)")
    layers: dict[str, list[str]] = Field(default_factory=dict, description="per model, the layer names CKA compares (default: all)")
    split: str | None = Field(None, description="compare on this split only (e.g. test; of split_task, else of the first task "
                              "whose split key the rows carry); None: every utterance")
    split_task: str | None = Field(None, description="the task whose split key `split` refers to (e.g. pr)")
    max_utterances: int | None = Field(None, ge=2, description="compare on a seeded, speaker-balanced sample of this many utterances "
                                       "of the split; frames are stored only for the sample")
    seed: int | None = Field(None, ge=0, description="seed of the sample (default: the study's seed)")
    convergence: bool = Field(True, description="also estimate CKA on a seeded half of the sample and report half vs all")
    measures: list[str] = Field(default_factory=lambda: ["linear_cka"], min_length=1,
                                description="similarity measures of every comparison (layerlab.cka.measure_registry): linear_cka, cca_r2, cca_mean, "
                                            "svcca, pwcca, procrustes, ridge_r2 (from the CKA state), rbf_cka, mutual_knn (on a sample)")
    measure_options: MeasureOptions = Field(default_factory=MeasureOptions, description="ridge, svcca_fraction, ridge_grid/folds, sample_size/seed, knn_k, rbf_*")

    def sample(self, study_seed: int) -> dict[str, Any] | None:
        """The sample settings (None: every utterance of every dataset)."""
        if self.split is None and self.max_utterances is None:
            return None
        return {"split": self.split, "split_task": self.split_task, "max_utterances": self.max_utterances,
                "seed": study_seed if self.seed is None else self.seed, "convergence": self.convergence}

    @field_validator("measures")
    @classmethod
    def _known_measures(cls, value: list[str]) -> list[str]:
        return parse_measures(value)

    @model_validator(mode="after")
    def _measures_need_moments(self) -> "CKASection":
        for name, comp in (("within", self.within), ("across", self.across)):
            beyond = [m for m in moment_names(self.measures_of(comp)) if m != "linear_cka"] if comp else []
            if comp and beyond and comp.estimator == "minibatch":
                raise ValueError(f"measures: {beyond[0]} needs the full second moments; {name}.estimator minibatch keeps only HSIC sums")
        return self

    def measures_of(self, comparison: CKAComparison | None) -> list[str]:
        """The measures of one family of comparisons: its own list, else the section's."""
        return list(comparison.measures) if comparison is not None and comparison.measures is not None else list(self.measures)

    def non_default_measures(self, comparison: CKAComparison | None = None) -> dict[str, Any]:
        """The measure settings a CKA stage records (empty for linear CKA alone with default options: fingerprints unchanged)."""
        out: dict[str, Any] = {}
        measures = self.measures_of(comparison)
        if measures != ["linear_cka"]:
            out["measures"] = measures
        options = self.measure_options.model_dump(exclude_defaults=True)
        if options:
            out["measure_options"] = options
        return out


class Budget(_Strict):
    """Limits the plan must stay under (checked at --dry-run, before any work): the first stage that breaks one is named."""

    stored_tb: float | None = Field(None, gt=0, description="terabytes written by the whole study (every tier, every stage)")
    read_tb: float | None = Field(None, gt=0, description="terabytes read by the whole study")
    cka_read_tb: float | None = Field(None, gt=0, description="terabytes read by all CKA stages together")
    gpu_hours: float | None = Field(None, gt=0, description="GPU-hours on the configured GPU node type")


class Nodes(_Strict):
    """The node types the study runs on (layerlab.study.cost_facts.NODE_TYPES): GPU-hours and memory limits come from them."""

    gpu: str = Field("g5.2xlarge", description="GPU worker node type (extraction, training, GPU probe trials)")
    cpu: str = Field("m6i.4xlarge", description="CPU worker node type (probe trials, distributed CKA)")
    head: str = Field("m6i.2xlarge", description="head node type (the study driver)")

    @model_validator(mode="after")
    def _known(self) -> "Nodes":
        from layerlab.study.cost_facts import NODE_TYPES

        for key in ("gpu", "cpu", "head"):
            if getattr(self, key) not in NODE_TYPES:
                raise ValueError(f"{key}: unknown node type {getattr(self, key)!r}; known: {', '.join(sorted(NODE_TYPES))}")
        if not NODE_TYPES[self.gpu].gpus:
            raise ValueError(f"gpu: node type {self.gpu!r} has no GPU")
        return self


class ProfileSection(_Strict):
    """Training-free per-layer profiles (`layerlab profile`): CCA, a closed-form classifier and MI against label references."""

    references: Literal["all"] | list[str] = Field("all", description="phone, phone_span, word_span, speaker, keyword, intent, style, "
                                                   "or all (a reference a dataset has no labels for is skipped with its reason)")
    clusters: int = Field(100, ge=0, description="k of the k-means units for MI/purity with phones (0: no MI)")
    pilot_frames: int = Field(20000, ge=1, description="frames per layer in the seeded pilot sample (shift, k-means codebook)")
    ridges: list[float] = Field(default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1, 1.0], min_length=1,
                                description="relative ridge grid of the closed-form classifier, chosen per layer on dev")
    intervals: bool = Field(True, description="leave-one-speaker-out jackknife intervals")
    models: list[str] | None = Field(None, description="profile only these study models (default: every model)")
    datasets: list[str] | None = Field(None, description="datasets to profile on (default: all)")

    @field_validator("references")
    @classmethod
    def _known(cls, value: Any) -> Any:
        from layerlab.profile.references import parse_references

        parse_references(value, what="")  # unknown names: one line listing the known ones
        return value

    @field_validator("ridges")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(not r > 0 for r in value):
            raise ValueError(f"ridges must be positive, got {value}")
        return value


class ReportSection(_Strict):
    """What the report shows."""

    title: str = "layerlab study"
    split: Literal["dev", "test"] = Field("test", description="split whose metrics rank the models")


class StudyConfig(_Strict):
    """A whole study: one YAML file -> one results folder with one report."""

    name: str = Field("study")
    out: str | None = Field(None, description="results folder or URL (the CLI's --out overrides it)")
    seed: int = 0
    strict: bool = Field(False, description="a task a dataset has no labels for is an error instead of skipped")
    allow_overlap: bool = Field(False, description="run even when upstream training cannot be kept off a probe's dev/test speakers "
                                                   "(the overlap is counted in study.json and stated in the report)")
    trust_remote_code: bool = Field(False, description="load model bundles whose config runs code (a speechbrain hyperparams.yaml "
                                    "is HyperPyYAML): only for bundles you trust; dry runs never run it")
    trust_tune_state: bool = Field(False, description="resume an interrupted Tune sweep by restoring its state, a pickle that can run "
                                   "code: only for a results folder nobody else can write (default: the sweep is recomputed)")
    parallel: int = Field(2, ge=1, le=64, description="stages run at once (a thread pool of library calls)")
    parallel_extract: int = Field(1, ge=1, le=64, description="extraction stages at once (each runs its own actor pool)")
    parallel_train: int = Field(1, ge=1, le=64, description="training stages at once (each a Ray Train run with its own workers)")
    datasets: dict[str, DatasetConfig] = Field(..., min_length=1)
    models: dict[str, ModelConfig] = Field(..., min_length=1)
    extract: dict[str, Any] = Field(default_factory=dict, description="ExtractConfig defaults for every model")
    probe: ProbeSection | None = Field(default_factory=ProbeSection)
    cka: CKASection | None = Field(default_factory=CKASection)
    profile: ProfileSection | None = Field(None, description="training-free per-layer profiles (off unless given)")
    report: ReportSection = Field(default_factory=ReportSection)
    budget: Budget | None = Field(None, description="stored/read terabytes and GPU-hours the plan must stay under")
    nodes: Nodes = Field(default_factory=Nodes, description="node types of the cluster (cost model: GPU-hours, memory limits)")

    @field_validator("datasets", "models")
    @classmethod
    def _names(cls, value: dict[str, Any], info: Any) -> dict[str, Any]:
        from layerlab.storage import check_name

        for key in value:  # each name becomes a folder under --out: never '.', '..', a separator or a control character
            check_name(key, f"{info.field_name[:-1]} name")
        return value

    @field_validator("name")
    @classmethod
    def _study_name(cls, value: str) -> str:
        from layerlab.storage import check_name

        return check_name(value, "study name")  # the default --out is runs/<name>

    @model_validator(mode="after")
    def _references(self) -> "StudyConfig":
        from layerlab.extract.config import ExtractConfig

        self._resolve_controls()
        for name, model in self.models.items():
            if model.train and model.train.data and model.train.data not in self.datasets:
                raise ValueError(f"models.{name}.train.data: {model.train.data!r} is not a dataset of this study ({sorted(self.datasets)})")
            ExtractConfig.model_validate({**self.extract, **model.extract})
        ExtractConfig.model_validate(self.extract)
        for section, names in (("probe", self.probe.datasets if self.probe else None), ("cka", self.cka.datasets if self.cka else None),
                               ("profile", self.profile.datasets if self.profile else None)):
            for d in names or []:
                if d not in self.datasets:
                    raise ValueError(f"{section}.datasets: {d!r} is not a dataset of this study ({sorted(self.datasets)})")
        for m in (self.cka.layers if self.cka else {}):
            if m not in self.models:
                raise ValueError(f"cka.layers: {m!r} is not a model of this study ({sorted(self.models)})")
        for m in (self.profile.models or []) if self.profile else []:
            if m not in self.models:
                raise ValueError(f"profile.models: {m!r} is not a model of this study ({sorted(self.models)})")
        if self.cka and self.cka.across and self.cka.across.pairs != "all":
            for a, b in self.cka.across.pairs:
                for m in (a, b):
                    if m not in self.models:
                        raise ValueError(f"cka.across.pairs: {m!r} is not a model of this study ({sorted(self.models)})")
        return self

    def _resolve_controls(self) -> None:
        """Check each random-init control's ``control_of`` and give it that model's spec (or train dependency) and family."""
        from layerlab.models.random_init import random_spec
        from layerlab.models.registry import parse_spec

        for name, m in self.models.items():
            if not m.random_init:
                continue
            if m.control_of is None:  # a spec control: the control of the study model with the same spec, if any
                twin = next((k for k, o in self.models.items() if k != name and not o.random_init and o.spec == m.spec), None)
                if twin is not None:
                    m.control_of = twin
                continue
            base = self.models.get(m.control_of)
            if base is None or m.control_of == name:
                raise ValueError(f"models.{name}.control_of: {m.control_of!r} is not another model of this study ({sorted(self.models)})")
            if base.random_init:
                raise ValueError(f"models.{name}.control_of: {m.control_of!r} is itself a random-init control")
            if base.spec is not None:
                parse_spec(random_spec(base.spec, m.seed or 0))  # fbank/mfcc/planted: no weights (one error line)
            if m.family is None:
                m.family = base.resolved_family()  # type: ignore[assignment]

    def control_source(self, name: str) -> tuple[str | None, str | None]:
        """(spec extraction loads, trained model whose checkpoint it randomises) of model ``name``; one of them is None."""
        m = self.models[name]
        if not (m.random_init and m.control_of and m.spec is None):
            return m.extract_spec(), None
        base = self.models[m.control_of]
        if base.spec is not None:
            from layerlab.models.random_init import random_spec

            return random_spec(base.spec, m.seed or 0), None
        return None, m.control_of

    def model_extras(self, name: str) -> dict[str, Any]:
        """Keys the report reads beside label/family/layers (CONTRACTS.md section 6): control_of, random_init seed, planted."""
        m = self.models[name]
        out: dict[str, Any] = {}
        if m.random_init:
            out["random_init"] = {"seed": m.seed or 0}
            if m.control_of:
                out["control_of"] = m.control_of
        spec = m.spec or ""
        if spec.split(":", 1)[0] == "planted":
            from layerlab.models.planted import parse_planted, planted_expectations

            out["planted"] = True
            out["expect"] = planted_expectations(parse_planted(spec.partition(":")[2], spec)["order"])
        return out

    def probe_datasets(self) -> list[str]:
        return list(self.probe.datasets or self.datasets) if self.probe else []

    def analysed_datasets(self) -> list[str]:
        """Datasets that get activation caches (probed or compared); the others only feed training."""
        used = set(self.probe_datasets()) | set(self.cka_datasets()) | set(self.profile_datasets())
        return [d for d in self.datasets if d in used]

    def profile_datasets(self) -> list[str]:
        return list(self.profile.datasets or self.datasets) if self.profile else []

    def profile_models(self) -> list[str]:
        return [m for m in self.models if not self.profile or self.profile.models is None or m in self.profile.models] if self.profile else []

    def cka_datasets(self) -> list[str]:
        return list(self.cka.datasets or self.datasets) if self.cka else []

    def across_pairs(self) -> list[tuple[str, str]]:
        """Model pairs compared across models (each unordered pair once, in config order)."""
        if not self.cka or not self.cka.across:
            return []
        names = list(self.models)
        if self.cka.across.pairs == "all":
            return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
        return [tuple(p) for p in self.cka.across.pairs]  # type: ignore[misc]


class StudyConfigError(ConfigError):
    """A study config that cannot be used; the message names the key, the reason and the file (``problems``: a plan's)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


def parse_study_config(data: Any, source: str) -> StudyConfig:
    """Validate an already-parsed YAML document, nested probe and inline training configs included; errors name ``source``."""
    if not isinstance(data, dict):
        raise StudyConfigError(f"{source}: expected a mapping with datasets/models/probe/cka sections, got {type(data).__name__}")
    try:
        config = StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise StudyConfigError(format_validation(source, exc, StudyConfig)) from None
    _check_nested(config, data, source)
    return config


def _check_nested(config: StudyConfig, data: dict[str, Any], source: str) -> None:
    """Probe configs (``probe.defaults.config``, ``probe.tasks[i].config``) and inline recipe configs
    (``models.<m>.train.config``) are typed configs of their own: validated here, errors with their full key path."""
    try:
        from layerlab.probe.config import ProbeConfig
    except ImportError:  # pragma: no cover - the probe package is optional for studies without probes
        ProbeConfig = None  # type: ignore[assignment]  # noqa: N806
    if ProbeConfig is not None and config.probe is not None:
        nested = [(("probe", "defaults", "config"), config.probe.defaults.config)]
        if config.probe.tasks != "all":
            nested += [(("probe", "tasks", i, "config"), t.config) for i, t in enumerate(config.probe.tasks) if not isinstance(t, str)]
        for where, doc in nested:
            try:
                ProbeConfig.model_validate(doc)
            except ValidationError as exc:
                raise StudyConfigError(format_validation(source, exc, ProbeConfig, where)) from None
    for name, model in config.models.items():
        if model.train is None:
            continue
        try:
            from layerlab.train.config import CONFIGS
        except ImportError:  # pragma: no cover - the train package is optional
            return
        cls = CONFIGS.get(model.train.recipe)
        if cls is None:
            raise StudyConfigError(f"{source}: models.{name}.train.recipe: unknown recipe {model.train.recipe!r} (allowed: {', '.join(CONFIGS)})")
        if not isinstance(model.train.config, dict):
            continue  # a recipe config file: checked (naming that file) when the study is planned
        try:
            cls.model_validate(model.train.config)
        except ValidationError as exc:
            raise StudyConfigError(format_validation(source, exc, cls, ("models", name, "train", "config"))) from None


def load_study_config(url: str) -> tuple[StudyConfig, str]:
    """Read and validate a study YAML file (any storage URL); returns (config, the file's text)."""
    from layerlab import storage

    try:
        data = read_yaml(url)
    except ConfigError as exc:
        raise StudyConfigError(str(exc).replace("config file not found", "study config not found")) from None
    return parse_study_config(data, url), storage.read_bytes(url).decode()

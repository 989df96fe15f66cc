"""One speaker partition per dataset, shared by upstream training and the probes (no leakage).

The *evaluation speakers* E of a dataset are every speaker that appears in a probed task's dev or
test split (and every speaker of the ASV trial list); the *upstream speakers* are the rest. A model
trained in the study on that dataset trains on upstream speakers only (its recipe gets
``exclude_speakers``), and every probe on that dataset draws dev/test from E only (ProbeConfig
``eval_speakers``). When no probed task gives a split, E is a seeded third of the speakers.
Where training cannot be kept off E (every speaker is an evaluation speaker, or the recipe config
names its own ``exclude_speakers`` that misses some) the plan has a problem, unless the study sets
``allow_overlap: true``; then the overlap is counted in the plan (study.json, index, report).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Fraction of the speakers chosen as evaluation speakers when no probed task gives a split.
SEEDED_EVAL_FRACTION = 1 / 3


@dataclass
class SpeakerPartition:
    """A dataset's evaluation speakers (reason -> speakers) and all its speakers."""

    dataset: str
    groups: dict[str, list[str]]
    speakers: list[str]
    source: str  # "corpus" (read from the built dataset) | "predicted" (synthetic corpus plan) | "seeded"
    notes: list[str] = field(default_factory=list)

    @property
    def evaluation(self) -> list[str]:
        """Sorted evaluation speakers (never trained on upstream)."""
        return sorted({s for group in self.groups.values() for s in group})

    @property
    def upstream(self) -> list[str]:
        """Sorted speakers free for upstream training."""
        held = set(self.evaluation)
        return [s for s in self.speakers if s not in held]

    def record(self) -> dict[str, Any]:
        """Counts and lists for study.json and the index."""
        return {"source": self.source, "speakers": len(self.speakers), "evaluation_speakers": self.evaluation,
                "upstream_speakers": len(self.upstream), "groups": {k: len(v) for k, v in self.groups.items()},
                "notes": list(self.notes)}


def split_key_of(task: str, specs: dict[str, Any]) -> str:
    """The split key a probe task reads: the dataset's declared task spec, else the task's base name."""
    base = {"asv-cosine": "asv", "pr-frame": "pr"}.get(task, task.split("-")[0])
    for name in (task, base, "er" if base == "style" else base):
        spec = specs.get(name)
        if spec is not None and getattr(spec, "split_key", None):
            return str(spec.split_key)
    return base


def partition_from_rows(dataset: str, rows: list[tuple[str, dict[str, str]]], trial_speakers: set[str],
                        tasks: list[tuple[str, str, bool]], seed: int, source: str) -> SpeakerPartition:
    """The partition from (speaker, splits) rows; ``tasks`` are (task, split key, probe derives its split)."""
    speakers = sorted({s for s, _ in rows})
    groups: dict[str, set[str]] = {}
    notes: list[str] = []
    for task, key, derived in tasks:
        if derived:
            notes.append(f"{task}: the probe derives its split; dev/test drawn from the evaluation speakers only")
            continue
        found = {s for s, splits in rows if splits.get(key) in ("dev", "test")}
        if not found and not any(key in splits for _, splits in rows):
            notes.append(f"{task}: no split {key!r} in the dataset; the probe derives one from the evaluation speakers")
        if found:
            groups[f"{task} dev/test"] = found
        if task.startswith("asv") and trial_speakers:
            groups["asv trial list"] = set(trial_speakers)
    out = SpeakerPartition(dataset, {k: sorted(v) for k, v in groups.items()}, speakers, source, notes)
    if not out.groups and tasks and speakers:
        rng = np.random.default_rng([seed, 0x1EA4])
        k = min(len(speakers) - 1, max(2, int(round(len(speakers) * SEEDED_EVAL_FRACTION))))
        chosen = sorted(speakers[i] for i in rng.permutation(len(speakers))[:k])
        out.groups = {f"seeded evaluation speakers (seed {seed}, no probed task gives a split)": chosen}
        out.source = "seeded"
    return out


def dataset_partition(dataset: str, corpus: str | None, synth: dict[str, Any] | None,
                      tasks: list[tuple[str, bool]], seed: int) -> SpeakerPartition | None:
    """The partition of a built dataset (``corpus`` readable) or of a synthetic one not yet built; None when unknown."""
    if corpus is not None:
        try:
            return _from_corpus(dataset, corpus, tasks, seed)
        except FileNotFoundError:
            pass
    if synth is not None:
        return _from_synth(dataset, synth, tasks, seed)
    return None


def _from_corpus(dataset: str, corpus: str, tasks: list[tuple[str, bool]], seed: int) -> SpeakerPartition:
    from layerlab.data.manifest import read_manifest
    from layerlab.data.shards import read_metadata, read_table

    manifest = read_manifest(corpus)
    meta = read_metadata(corpus, columns=("id", "speaker", "splits"))
    rows = [(str(s or ""), dict(sp or [])) for s, sp in zip(meta.column("speaker").to_pylist(), meta.column("splits").to_pylist())]
    trial: set[str] = set()
    if "asv_trials" in manifest.tables:
        table = read_table(corpus, "asv_trials")
        by_id = dict(zip(meta.column("id").to_pylist(), meta.column("speaker").to_pylist()))
        trial = {str(by_id[u]) for u in set(table.column("enrol").to_pylist()) | set(table.column("test").to_pylist()) if u in by_id}
    specs = dict(getattr(manifest, "tasks", {}) or {})
    keyed = [(t, split_key_of(t, specs), derived) for t, derived in tasks]
    return partition_from_rows(dataset, rows, trial, keyed, seed, "corpus")


def _from_synth(dataset: str, synth: dict[str, Any], tasks: list[tuple[str, bool]], seed: int) -> SpeakerPartition:
    """The synthetic corpus's partition from its plan (no audio rendered): what the built corpus will hold."""
    from layerlab.data.synth import SynthConfig
    from layerlab.data.synth.tasks import assign_roles, plan_corpus
    from layerlab.data.synth.voices import make_speakers

    cfg = SynthConfig.model_validate(synth)
    speakers = make_speakers(cfg.speakers, cfg.seed)
    roles = assign_roles(speakers, cfg)
    rows = [(p.speaker, dict(p.splits)) for p in plan_corpus(speakers, roles, cfg)]
    trial = {s for s, role in roles.asv.items() if role == "test"}
    return partition_from_rows(dataset, rows, trial, [(t, split_key_of(t, {}), d) for t, d in tasks], seed, "predicted")


def user_exclusion(config: Any) -> list[str] | None:
    """``exclude_speakers`` as the user wrote it in an inline recipe config, else None (the study chooses)."""
    if isinstance(config, dict) and config.get("exclude_speakers") is not None:
        value = config["exclude_speakers"]
        if isinstance(value, dict):
            return sorted({str(s) for group in value.values() for s in group})
        return sorted(map(str, value))
    return None


def overlap(partition: SpeakerPartition, excluded: list[str] | None) -> dict[str, int]:
    """Counts of evaluation speakers that training on the dataset would see (0 when ``excluded`` covers E)."""
    evaluation = set(partition.evaluation)
    if excluded is None:  # the study's own list: E itself, unless that leaves nothing to train on
        seen = evaluation if not partition.upstream else set()
    else:
        seen = evaluation - set(excluded)
    return {"evaluation_speakers": len(evaluation), "seen_in_training": len(seen), "upstream_speakers": len(partition.upstream)}

"""What every probe task shares: its declaration, the task contract lookup, labels, splits (given or derived)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import torch

from layerlab.data.selection import speaker_balanced_sample
from layerlab.probe.config import ProbeConfig
from layerlab.probe.evaluation import Evaluation
from layerlab.probe.source import ProbeSource, input_error

SPLITS = ("train", "dev", "test")
TRANSCRIPT = "transcript"


@dataclass(frozen=True)
class TaskDef:
    """A task module's declaration: contract task it reads, tier, metrics and their direction, how to bind it."""

    name: str
    spec_names: tuple[str, ...]  # contract task names it can read, first found wins (e.g. style|er)
    tier: Literal["pooled", "frames"]  # the tier its head needs (utterance heads: pooled suffices)
    primary: str
    higher_is_better: dict[str, bool]
    bind: Callable[..., BoundTask]
    trains: bool = True  # False: scored directly (asv-cosine)
    description: str = ""
    frame_targets: bool = False  # one target per frame (phones): the weighted sum takes the frame-level layers only
    # frames tasks: (source, task, spec, cfg) -> (the rows it can use, the config its splits are resolved with); the study
    # resolves the same splits before extraction to write frames only for them (layerlab.probe.needs)
    split_rows: Callable[..., tuple[pd.DataFrame, ProbeConfig]] | None = None


class BoundTask(Protocol):
    """A task bound to a source, a split and a layer selection: everything the training loop calls."""

    primary: str
    higher_is_better: bool
    layers: list[str]
    info: dict[str, Any]

    def build(self, hp: dict[str, Any], seed: int) -> torch.nn.Module: ...

    def train_batches(self, epoch: int, seed: int) -> Iterable[Any]: ...

    def loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor: ...

    def evaluate(self, model: torch.nn.Module, split: str) -> Evaluation: ...


@dataclass
class Splits:
    """Utterance ids per split and how they were obtained (recorded with the results)."""

    ids: dict[str, list[str]]
    derived: bool
    rule: str
    seed: int
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """Sizes and provenance for summary.json."""
        return {"sizes": {k: len(v) for k, v in self.ids.items()}, "derived": self.derived, "rule": self.rule, "seed": self.seed,
                "notes": self.notes}


def find_spec(source: ProbeSource, task: TaskDef) -> Any:
    """The contract TaskSpec the task reads, or an error naming the cache, task and the tasks it has."""
    for name in task.spec_names:
        if name in source.tasks:
            return source.tasks[name]
    have = ", ".join(sorted(source.tasks)) or "none"
    raise input_error(source.url, task.name, f"the cache's dataset has no labels for it (needs task {' or '.join(task.spec_names)}; has: {have})")


def check_tier(source: ProbeSource, task: str, tier: str) -> None:
    """Refuse a source without the tier a task needs."""
    if tier not in source.tiers:
        raise input_error(source.url, task, f"needs the {tier} tier, but the cache has only {', '.join(sorted(source.tiers))}; "
                                            f"re-extract with `layerlab extract --tier both`")


def label_of(row: pd.Series, key: str) -> str | None:
    """A row's label for ``key`` (``transcript``: the row's transcript)."""
    if key == TRANSCRIPT:
        value = row.get("transcript")
    else:
        labels = row.get("labels")
        value = dict(labels).get(key) if labels is not None else None
    return None if value is None or (isinstance(value, float) and np.isnan(value)) or value == "" else str(value)


def labelled_rows(source: ProbeSource, task: str, keys: list[str]) -> pd.DataFrame:
    """Rows carrying every label key, with a ``y_<key>`` column each; an error when none do."""
    rows = source.rows
    values = {k: rows.apply(lambda r, k=k: label_of(r, k), axis=1) if len(rows) else pd.Series(dtype=object) for k in keys}
    keep = np.ones(len(rows), dtype=bool)
    for v in values.values():
        keep &= v.notna().to_numpy()
    if not keep.any():
        raise input_error(source.url, task, f"no utterance carries the label(s) {', '.join(keys)}")
    out = rows.loc[keep].copy()
    for k, v in values.items():
        out[f"y_{k}"] = v[keep].to_numpy()
    return out


def _split_value(row: pd.Series, key: str) -> str | None:
    splits = row.get("splits")
    value = dict(splits).get(key) if splits is not None else None
    return None if value in (None, "") else str(value)


def _stratified(ids: list[str], strata: list[str], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Per stratum (label), a seeded share of utterances to each non-train split (at least one each when possible)."""
    rng = np.random.default_rng([seed, 0x5B1])
    groups: dict[str, list[str]] = {}
    for uid, s in sorted(zip(ids, strata)):
        groups.setdefault(s, []).append(uid)
    out: dict[str, str] = {}
    for s in sorted(groups):
        members = [groups[s][i] for i in rng.permutation(len(groups[s]))]
        n = len(members)
        start = 0
        for split, frac in fractions.items():
            k = max(1, round(n * frac)) if n >= len(fractions) + 1 else 0
            for uid in members[start : start + k]:
                out[uid] = split
            start += k
        for uid in members[start:]:
            out[uid] = "train"
    return out


def _by_speaker(ids: list[str], speakers: list[str], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Speaker-disjoint seeded assignment: whole speakers go to each non-train split."""
    rng = np.random.default_rng([seed, 0x5B2])
    spk = sorted(set(speakers))
    order = [spk[i] for i in rng.permutation(len(spk))]
    role: dict[str, str] = {}
    start = 0
    for split, frac in fractions.items():
        k = max(1, round(len(order) * frac))
        for s in order[start : start + k]:
            role[s] = split
        start += k
    for s in order[start:]:
        role[s] = "train"
    return {u: role[s] for u, s in zip(ids, speakers)}


def frames_held(source: ProbeSource) -> Any:
    """The ids a cache's partial frames tier holds (a FramesSelection), or None when it holds every utterance."""
    held = getattr(source, "frames_selection", None)
    return held() if callable(held) else None


def resolve_splits(source: ProbeSource, task: str, spec: Any, rows: pd.DataFrame, cfg: ProbeConfig, *,
                   strata: list[str] | None, speaker_disjoint: bool, frames: Any = None) -> Splits:
    """Train/dev/test ids from the dataset's split (or folds); missing pieces derived from ``cfg.split_seed``.

    Derivation (``cfg.derived_split``): ``auto`` is speaker-disjoint when ``speaker_disjoint`` (ASV, PR, ASR),
    else stratified by ``strata`` (SID: each speaker's utterances spread over the splits); ``speaker`` makes
    any task's derived split speaker-disjoint (IC on a corpus whose given split cannot be used), ``stratified``
    stratifies it. A dev split missing from a given split is carved out of train. With folds, ``cfg.test_fold``
    is the test fold (the first when unset; :func:`folds_to_run` runs every fold).

    ``frames`` (a frames task on a cache whose frames tier holds a selection, :func:`frames_held`): train and dev
    keep the utterances it holds (the selection's sample, recorded in the notes); the test split must be complete.
    Then ``max_train_utterances`` / ``max_dev_utterances`` draw seeded, speaker-balanced samples.
    """
    if cfg.derived_split != "auto":
        speaker_disjoint = cfg.derived_split == "speaker"
    ids = list(rows.index)
    speakers = [str(s) for s in rows["speaker"]]
    group_speaker = dict(zip(ids, speakers))
    strata = strata if strata is not None else ["all"] * len(ids)
    seed = cfg.split_seed
    notes: list[str] = []
    key = getattr(spec, "split_key", None)
    given = [_split_value(r, key) for _, r in rows.iterrows()] if key and not cfg.ignore_dataset_split else [None] * len(ids)
    folds = list(getattr(spec, "folds", []) or [])
    group = dict(zip(ids, speakers if speaker_disjoint else strata))
    allowed = set(cfg.eval_speakers) if cfg.eval_speakers is not None else None
    speaker_of = dict(zip(ids, speakers))

    def derive(members: list[str], fractions: dict[str, float]) -> dict[str, str]:
        split_fn = _by_speaker if speaker_disjoint else _stratified
        if allowed is None:
            return split_fn(members, [group[u] for u in members], fractions, seed)
        inside = [u for u in members if speaker_of[u] in allowed]  # dev/test only from the evaluation speakers
        return {**{u: "train" for u in members}, **split_fn(inside, [group[u] for u in inside], fractions, seed)}

    if not any(v is not None for v in given):
        assign = derive(ids, {"test": cfg.derived_test_fraction, "dev": cfg.derived_dev_fraction})
        rule = ("speaker-disjoint" if speaker_disjoint else "stratified by label") + f" split derived with seed {seed} " \
               f"(dev {cfg.derived_dev_fraction:g}, test {cfg.derived_test_fraction:g})"
        derived = True
    elif folds:
        test_fold = cfg.test_fold or folds[0]
        if test_fold not in folds:
            raise input_error(source.url, task, f"test fold {test_fold!r} is not one of the folds {', '.join(folds)}")
        rest = [u for u, v in zip(ids, given) if v is not None and v != test_fold]
        assign = {u: "test" for u, v in zip(ids, given) if v == test_fold}
        assign.update(derive(rest, {"dev": cfg.derived_dev_fraction}))
        rule, derived = f"fold {test_fold!r} as test; dev derived from the other folds with seed {seed}", True
    else:
        assign = {u: v for u, v in zip(ids, given) if v in SPLITS}
        rule, derived = f"dataset split {key!r}", False
        if not any(v == "dev" for v in assign.values()):
            train = [u for u, v in assign.items() if v == "train"]
            assign.update(derive(train, {"dev": cfg.derived_dev_fraction}))
            rule += f"; dev derived from train ({'speaker-disjoint' if speaker_disjoint else 'stratified'}, seed {seed})"
            derived = True
        skipped = sum(1 for v in given if v is not None and v not in SPLITS)
        if skipped:
            notes.append(f"{skipped} utterances with split values outside train/dev/test were not used")
    if allowed is not None:
        outside = [u for u, v in assign.items() if v in ("dev", "test") and speaker_of[u] not in allowed]
        for u in outside:
            del assign[u]
        if outside:
            notes.append(f"{len(outside)} dev/test utterances of speakers outside the evaluation speakers were not used")
        rule += f"; dev/test restricted to {len(allowed)} evaluation speakers"
    out = {s: [u for u in ids if assign.get(u) == s] for s in SPLITS}
    if frames is not None:
        held = frames.ids if hasattr(frames, "ids") else frames
        missing = [u for u in out["test"] if u not in held]
        if missing:
            raise input_error(source.url, task, f"the cache's frames tier holds {len(out['test']) - len(missing)} of the {len(out['test'])} "
                                                f"test utterances (e.g. {missing[0]!r} has none): the test split must be complete; "
                                                "extract again with a frames selection made for this probe's settings")
        for s in ("train", "dev"):
            kept = [u for u in out[s] if u in held]
            if len(kept) < len(out[s]):
                cropped = sum(1 for u in kept if held.get(u) is not None) if isinstance(held, dict) else 0
                notes.append(f"{s} split: the {len(kept)} of {len(out[s])} utterances the cache's frames selection holds"
                             + (f" ({cropped} as fixed crops)" if cropped else ""))
                out[s] = kept
    for s, limit, key in (("train", cfg.max_train_utterances, "max_train_utterances"), ("dev", cfg.max_dev_utterances, "max_dev_utterances")):
        if limit is not None and len(out[s]) > limit:
            out[s] = speaker_balanced_sample(out[s], [str(group_speaker[u]) for u in out[s]], limit, seed)
            notes.append(f"{s} split subsampled to {limit} utterances ({key}; seeded, speaker-balanced)")
    for s in SPLITS:
        if not out[s]:
            raise input_error(source.url, task, f"split {s!r} has no examples ({rule})")
    return Splits(out, derived, rule, seed, notes)


def folds_to_run(source: ProbeSource, task: TaskDef, cfg: ProbeConfig) -> list[str]:
    """The folds a probe runs one after another, each as test (leave-one-fold-out; SUPERB ER: 5 IEMOCAP sessions).

    Empty when the task's contract declares no folds, the dataset's rows carry none of them, ``cfg.test_fold``
    picks one fold, ``cfg.ignore_dataset_split`` derives a split instead, or the task does not train.
    """
    if not task.trains or cfg.test_fold is not None or cfg.ignore_dataset_split:
        return []
    spec = next((source.tasks[n] for n in task.spec_names if n in source.tasks), None)
    folds = list(getattr(spec, "folds", []) or [])
    key = getattr(spec, "split_key", None)
    if len(folds) < 2 or not key:
        return []
    present = {_split_value(r, key) for _, r in source.rows.iterrows()}
    run = [f for f in folds if f in present]
    return run if len(run) >= 2 else []


def check_labels_seen(source: ProbeSource, task: str, rows: pd.DataFrame, splits: Splits, key: str) -> list[str]:
    """Sorted training classes of label ``key``; an error naming labels of dev/test never seen in training."""
    train = set(rows.loc[splits.ids["train"], f"y_{key}"])
    for s in ("dev", "test"):
        unseen = sorted(set(rows.loc[splits.ids[s], f"y_{key}"]) - train)
        if unseen:
            shown = ", ".join(map(repr, unseen[:5])) + (" ..." if len(unseen) > 5 else "")
            raise input_error(source.url, task, f"label(s) {shown} of key {key!r} appear in {s} but never in train")
    return sorted(train)

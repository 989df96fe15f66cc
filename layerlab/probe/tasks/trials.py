"""Verification trial lists: the dataset's table restricted to known utterances, or derived pairs; scoring."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from layerlab.metrics import eer, min_dcf
from layerlab.probe.evaluation import Evaluation
from layerlab.probe.source import ProbeSource, input_error


@dataclass
class Trials:
    """Enrol/test id pairs with labels (1 = same speaker) and how many listed trials were dropped."""

    enrol: list[str]
    test: list[str]
    label: np.ndarray
    source: str
    dropped_unknown: int = 0

    def ids(self) -> set[str]:
        """Every utterance a trial names."""
        return set(self.enrol) | set(self.test)


def derived_trials(ids: list[str], speakers: list[str], seed: int, max_targets: int = 5000) -> Trials:
    """Every same-speaker pair (at most ``max_targets``, sampled) and as many sampled different-speaker pairs."""
    rng = np.random.default_rng([seed, 0x7A1])
    by: dict[str, list[str]] = {}
    for u, s in sorted(zip(ids, speakers)):
        by.setdefault(s, []).append(u)
    targets = [(a[i], a[j]) for a in by.values() for i in range(len(a)) for j in range(i + 1, len(a))]
    if len(targets) > max_targets:
        targets = [targets[i] for i in sorted(rng.choice(len(targets), max_targets, replace=False))]
    spk_of = dict(zip(ids, speakers))
    pool = sorted(ids)
    nontargets: set[tuple[str, str]] = set()
    if len(by) >= 2:
        limit = sum(len(a) * len(b) for i, a in enumerate(by.values()) for b in list(by.values())[i + 1 :])
        while len(nontargets) < min(len(targets), limit):
            i, j = rng.integers(len(pool), size=2)
            if spk_of[pool[i]] != spk_of[pool[j]]:
                nontargets.add((min(pool[i], pool[j]), max(pool[i], pool[j])))
    pairs = [(a, b, 1) for a, b in targets] + [(a, b, 0) for a, b in sorted(nontargets)]
    return Trials([p[0] for p in pairs], [p[1] for p in pairs], np.array([p[2] for p in pairs], dtype=np.int64), f"derived (seed {seed})")


def table_trials(source: ProbeSource, task: str, name: str, allowed: set[str]) -> Trials:
    """The dataset's trial table; trials naming utterances outside ``allowed`` (not cached / not test) are dropped and counted."""
    try:
        table: pd.DataFrame = source.table(name)
    except (FileNotFoundError, KeyError) as exc:
        raise input_error(source.url, task, f"trial table {name!r} not found in the source dataset ({exc})") from exc
    missing = {"enrol", "test", "label"} - set(table.columns)
    if missing:
        raise input_error(source.url, task, f"trial table {name!r} lacks column(s) {', '.join(sorted(missing))}")
    enrol, test = table["enrol"].astype(str).to_numpy(), table["test"].astype(str).to_numpy()
    ok = np.array([a in allowed and b in allowed for a, b in zip(enrol, test)], dtype=bool)
    if not ok.any():
        raise input_error(source.url, task, f"none of the {len(table)} trials of {name!r} names two known test utterances")
    label = table["label"].to_numpy().astype(np.int64)[ok]
    if label.min() == label.max():
        raise input_error(source.url, task, f"trial table {name!r} has only {'target' if label[0] else 'non-target'} trials among known utterances")
    return Trials(list(enrol[ok]), list(test[ok]), label, f"table {name!r}", int((~ok).sum()))


def score_trials(trials: Trials, vectors: dict[str, np.ndarray], p_target: float, speaker_of: dict[str, str] | None = None) -> Evaluation:
    """Cosine scores of every trial -> EER and normalised minDCF; intervals leave out one speaker (all its trials) at a time."""
    def unit(v: np.ndarray) -> np.ndarray:
        return v / max(float(np.linalg.norm(v)), 1e-12)

    normed = {u: unit(np.asarray(v, dtype=np.float64)) for u, v in vectors.items()}
    scores = np.array([float(normed[a] @ normed[b]) for a, b in zip(trials.enrol, trials.test)])
    labels = trials.label

    def metrics(idx: np.ndarray) -> dict[str, float]:
        s, y = scores[idx], labels[idx]
        if y.min() == y.max():
            return {"eer": float("nan"), "min_dcf": float("nan")}
        return {"eer": float(eer(s, y)), "min_dcf": float(min_dcf(s, y, p_target=p_target))}

    if speaker_of:
        groups: list = [(speaker_of[a], speaker_of[b]) if speaker_of[a] != speaker_of[b] else (speaker_of[a],)
                        for a, b in zip(trials.enrol, trials.test)]
        grouping = "speaker"
    else:
        groups, grouping = list(range(len(scores))), "trial"
    ev = Evaluation(metrics(np.ones(len(scores), dtype=bool)), n=len(scores), units="trials", statistic=metrics, groups=groups, grouping=grouping)
    ev.extra["dropped_unknown_trials"] = float(trials.dropped_unknown)
    return ev

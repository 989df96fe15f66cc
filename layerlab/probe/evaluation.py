"""A probe's evaluation on one split: metric values plus what an interval needs (the statistic and unit groups)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Hashable, Sequence

import numpy as np


@dataclass(frozen=True)
class MetricInterval:
    """One metric's interval with what a reader needs to judge it: its groups, method, a note, the leave-one-out values."""

    low: float
    high: float
    n_groups: int
    grouping: str
    method: str
    note: str
    replicates: dict[str, float]


@dataclass
class Evaluation:
    """Metrics of one split; ``statistic(keep)`` recomputes every metric on the units where ``keep`` is True.

    ``groups[i]`` is unit i's group (a speaker, or a tuple of both speakers of a trial): intervals leave one
    group out at a time (``layerlab.metrics.group_jackknife``). ``units`` names the units, ``n`` counts examples.
    """

    metrics: dict[str, float]
    n: int
    units: str
    statistic: Callable[[np.ndarray], dict[str, float]] | None = None
    groups: Sequence[Hashable | tuple[Hashable, ...]] | None = None
    grouping: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    def intervals(self, confidence: float = 0.95) -> dict[str, MetricInterval]:
        """Leave-one-group-out interval per metric, bounded to the metric's range (``layerlab.metrics.ci.metric_bounds``).

        Fewer than 2 groups: NaN bounds and a note saying why. Fewer than ``MIN_GROUPS``: the interval plus a
        visible note (not a warning swallowed here). Each carries its leave-one-group-out replicates.
        """
        from layerlab.metrics.ci import MIN_GROUPS, NO_INTERVAL, group_jackknife, metric_bounds

        labels = {g for m in (self.groups or []) for g in (m if isinstance(m, tuple) else (m,))}
        grouping = self.group_label()
        if self.statistic is None or self.groups is None or len(labels) < 2:
            why = "no groups recorded" if self.statistic is None or self.groups is None else f"only {len(labels)} {grouping or 'group'} group"
            return {k: MetricInterval(float("nan"), float("nan"), len(labels), grouping, "", f"no interval: {why} (needs at least 2)", {})
                    for k in self.metrics}
        cache: dict[bytes, dict[str, float]] = {}

        def values(keep: np.ndarray) -> dict[str, float]:
            key = np.packbits(keep).tobytes()
            if key not in cache:
                assert self.statistic is not None
                cache[key] = self.statistic(keep)
            return cache[key]

        note = "" if len(labels) >= MIN_GROUPS else (
            f"only {len(labels)} {grouping} groups (fewer than {MIN_GROUPS}): coverage not established")
        out = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the few-groups case is the row's note, once per metric
            for k in self.metrics:
                iv, reps = group_jackknife(lambda keep, k=k: values(keep)[k], list(self.groups), confidence=confidence,
                                           return_replicates=True, bounds=metric_bounds(k))
                why = [n for n in iv.notes if n.startswith(NO_INTERVAL)]  # e.g. an EER undefined without any one speaker
                out[k] = MetricInterval(float(iv.low), float(iv.high), int(iv.n_groups), grouping, iv.method, "; ".join(why + ([note] if note else [])),
                                        {str(g): float(v) for g, v in reps.items()})
        return out

    def group_label(self) -> str:
        """What the interval's groups are: ``grouping``, as "trial speakers" when units belong to two groups (trials)."""
        if self.groups is not None and any(isinstance(m, tuple) and len(m) > 1 for m in self.groups):
            return f"trial {self.grouping}s" if self.grouping else "trial groups"
        return self.grouping


def speaker_groups(speakers: Sequence[str], ids: Sequence[str]) -> tuple[list[str], str]:
    """Group units by speaker when there are at least two speakers, else by utterance (recorded as the grouping)."""
    if len(set(speakers)) >= 2:
        return list(speakers), "speaker"
    return list(ids), "utterance"

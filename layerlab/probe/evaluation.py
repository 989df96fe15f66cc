"""A probe's evaluation on one split: metric values plus what an interval needs (the statistic and unit groups)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Hashable, Sequence

import numpy as np


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

    def intervals(self, confidence: float = 0.95) -> dict[str, tuple[float, float]]:
        """Leave-one-group-out jackknife interval per metric (NaN when fewer than 2 groups)."""
        from layerlab.metrics import group_jackknife

        nan = {k: (float("nan"), float("nan")) for k in self.metrics}
        if self.statistic is None or self.groups is None or len({g for m in self.groups for g in (m if isinstance(m, tuple) else (m,))}) < 2:
            return nan
        cache: dict[bytes, dict[str, float]] = {}

        def values(keep: np.ndarray) -> dict[str, float]:
            key = np.packbits(keep).tobytes()
            if key not in cache:
                assert self.statistic is not None
                cache[key] = self.statistic(keep)
            return cache[key]

        out = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # few groups: recorded below, not a warning per metric
            for k in self.metrics:
                iv = group_jackknife(lambda keep, k=k: values(keep)[k], list(self.groups), confidence=confidence)
                out[k] = (float(iv.low), float(iv.high))
        return out


def speaker_groups(speakers: Sequence[str], ids: Sequence[str]) -> tuple[list[str], str]:
    """Group units by speaker when there are at least two speakers, else by utterance (recorded as the grouping)."""
    if len(set(speakers)) >= 2:
        return list(speakers), "speaker"
    return list(ids), "utterance"

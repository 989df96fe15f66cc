"""A probe's evaluation on one split: metric values plus what a bootstrap needs to resample them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Evaluation:
    """Metrics of one split; ``recompute(unit_index)`` recomputes every metric on a resample of the units.

    ``units`` names what is resampled (utterances, trials, speakers) and ``n`` how many examples were scored.
    """

    metrics: dict[str, float]
    n: int
    units: str
    num_units: int
    recompute: Callable[[np.ndarray], dict[str, float]] | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def intervals(self, resamples: int, level: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap interval per metric over ``units`` (NaN when not resampleable)."""
        nan = {k: (float("nan"), float("nan")) for k in self.metrics}
        if self.recompute is None or resamples <= 0 or self.num_units < 2:
            return nan
        rng = np.random.default_rng(seed)
        draws: dict[str, list[float]] = {k: [] for k in self.metrics}
        for _ in range(resamples):
            values = self.recompute(rng.integers(0, self.num_units, self.num_units))
            for k, bucket in draws.items():
                bucket.append(values[k])
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        return {k: (float(np.nanquantile(v, lo)), float(np.nanquantile(v, hi))) for k, v in draws.items()}

"""ASV without training: per layer, cosine scores of mean-subtracted pooled means on the test trials (a quick look).

The mean subtracted is that of the training speakers' utterances (no test statistics leak in).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from layerlab.probe.config import ProbeConfig
from layerlab.probe.evaluation import Evaluation
from layerlab.probe.source import ProbeSource, check_finite
from layerlab.probe.tasks.base import TaskDef, check_tier, find_spec, resolve_splits
from layerlab.probe.tasks.trials import (
    Trials,
    derived_trials,
    score_trials,
    table_trials,
)


class BoundCosineTask:
    """Cosine scoring of pooled layer means, bound to a source and its trial lists."""

    primary = "eer"
    higher_is_better = False

    def __init__(self, source: ProbeSource, task: TaskDef, cfg: ProbeConfig, layers: list[str]) -> None:
        spec = find_spec(source, task)
        self.source, self.task, self.cfg, self.layers = source, task, cfg, list(layers)
        check_tier(source, task.name, "pooled")
        rows = source.rows.loc[source.rows["speaker"].astype(str) != ""]
        dev_cfg = cfg.model_copy(update={"derived_dev_fraction": cfg.asv.dev_speaker_fraction})
        self.splits = resolve_splits(source, task.name, spec, rows, dev_cfg, strata=None, speaker_disjoint=True)
        self.rows = rows  # the split speakers a probe's summary records (test_speakers)
        self.trials: dict[str, Trials] = {}
        for split in ("dev", "test"):
            ids = self.splits.ids[split]
            table = getattr(spec, "trials", None)
            self.trials[split] = (table_trials(source, task.name, table, set(ids)) if split == "test" and table
                                  else derived_trials(ids, [str(s) for s in rows.loc[ids, "speaker"]], cfg.split_seed))
        self.info: dict[str, Any] = {"tier": "pooled", "splits": self.splits.describe(),
                                     "trials": {k: {"n": len(t.label), "source": t.source, "dropped_unknown": t.dropped_unknown}
                                                for k, t in self.trials.items()}}

    def score_layers(self, split: str = "test") -> dict[str, Evaluation]:
        """EER/minDCF of every layer alone on ``split``'s trials."""
        pooled = self.source.pooled()
        where = {u: i for i, u in enumerate(pooled.ids)}
        train = np.array([where[u] for u in self.splits.ids["train"] if u in where])
        needed = sorted(self.trials[split].ids())
        out = {}
        for name in self.layers:
            x = np.asarray(pooled.mean[name], dtype=np.float64)
            shift = x[train].mean(axis=0)
            vectors = {}
            for u in needed:
                v = x[where[u]]
                check_finite(self.source, self.task.name, u, name, v)
                vectors[u] = v - shift
            speaker_of = {u: str(self.source.rows.at[u, "speaker"]) for u in needed}
            out[name] = score_trials(self.trials[split], vectors, self.cfg.asv.p_target, speaker_of)
        return out


def _bind(source: ProbeSource, task: TaskDef, cfg: ProbeConfig, layers: list[str]) -> BoundCosineTask:
    return BoundCosineTask(source, task, cfg, layers)


TASK = TaskDef(name="asv-cosine", spec_names=("asv",), tier="pooled", primary="eer", higher_is_better={"eer": False, "min_dcf": False},
               bind=_bind, trains=False, description="speaker verification without training: cosine of mean-subtracted pooled means, per layer")

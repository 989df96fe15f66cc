"""PR (phone recognition): weighted sum -> ``Linear(H, 256)`` -> frame-wise linear -> CTC; greedy decoding; PER.

Phone sequences come from the ``pr`` label (space-separated phones) or, failing that, the row's
alignment. Frames are streamed from the frames tier through a bounded shuffle buffer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from layerlab.metrics import edit_distance
from layerlab.probe.config import ProbeConfig
from layerlab.probe.evaluation import Evaluation, speaker_groups
from layerlab.probe.featurizer import WeightedSum, sum_width
from layerlab.probe.heads import FrameLinear
from layerlab.probe.source import ProbeSource, input_error
from layerlab.probe.tasks.base import (
    TaskDef,
    check_tier,
    find_spec,
    frames_held,
    label_of,
    resolve_splits,
)
from layerlab.probe.tasks.ctc import ctc_loss, greedy_ctc
from layerlab.probe.tasks.frames import split_batches, frames_spread, train_scales

BLANK = "<blank>"


class FrameProbe(nn.Module):
    """Featurizer + frame-level linear head: per-layer padded frames -> per-frame logits ``[B, T, C]``."""

    def __init__(self, dims: list[int], num_outputs: int, hidden: int = 256, normalize: str | bool = "none",
                 scales: np.ndarray | None = None) -> None:
        super().__init__()
        self.featurizer = WeightedSum(dims, normalize=normalize, project_to=sum_width(dims, hidden), scales=scales)
        self.head = FrameLinear(self.featurizer.out_dim, num_outputs, hidden)

    def forward(self, frames: list[torch.Tensor]) -> torch.Tensor:
        """Per-frame logits."""
        return self.head(self.featurizer(frames))


def phones_of(row: Any, key: str) -> list[str] | None:
    """The phone sequence of a row: its ``key`` label split on spaces, else the alignment's phones."""
    text = label_of(row, key)
    if text:
        return text.split()
    align = row.get("alignment")
    if align is not None and len(align):
        return [str(p[0] if not isinstance(p, dict) else p["phone"]) for p in align]
    return None


def phone_rows(source: ProbeSource, task: TaskDef, spec: Any, cfg: ProbeConfig) -> tuple[pd.DataFrame, ProbeConfig]:
    """The rows with a phone sequence (``phones`` column), and the config their splits are resolved with."""
    key = spec.label_keys[0] if spec.label_keys else "pr"
    seqs = source.rows.apply(lambda r: phones_of(r, key), axis=1)
    keep = seqs.notna().to_numpy()
    if not keep.any():
        raise input_error(source.url, task.name, f"no utterance carries phone labels ({key!r} label or an alignment)")
    rows = source.rows.loc[keep].copy()
    rows["phones"] = seqs[keep].to_numpy()
    return rows, cfg


class BoundPhoneTask:
    """PR with CTC bound to a source, splits and layers."""

    def __init__(self, source: ProbeSource, task: TaskDef, cfg: ProbeConfig, layers: list[str]) -> None:
        cfg = cfg.for_tier(reads_frames=True)  # normalize auto -> layer_norm (frames are read anyway)
        spec = find_spec(source, task)
        self.source, self.task, self.cfg, self.layers = source, task, cfg, list(layers)
        check_tier(source, task.name, "frames")
        key = spec.label_keys[0] if spec.label_keys else "pr"
        self.rows, _ = phone_rows(source, task, spec, cfg)
        self.splits = resolve_splits(source, task.name, spec, self.rows, cfg, strata=None, speaker_disjoint=True, frames=frames_held(source))
        train_phones = sorted({p for u in self.splits.ids["train"] for p in self.rows.at[u, "phones"]})
        declared = list(getattr(spec, "classes", {}).get(key, []))
        inventory = sorted(set(declared) | set(train_phones))  # the dataset's phone set when it declares one
        for split in ("dev", "test"):
            unseen = sorted({p for u in self.splits.ids[split] for p in self.rows.at[u, "phones"]} - set(inventory))
            if unseen:
                where = "in train or the dataset's declared phone set" if declared else "in train"
                raise input_error(source.url, task.name, f"phone(s) {unseen[:5]} appear in {split} but never {where}")
        self.vocab = [BLANK] + inventory
        index = {p: i for i, p in enumerate(self.vocab)}
        self.targets = {u: [index[p] for p in ph] for u, ph in zip(self.rows.index, self.rows["phones"])}
        self.dims = [next(l.dim for l in source.layers if l.name == n) for n in self.layers]
        self.primary, self.higher_is_better = task.primary, task.higher_is_better[task.primary]
        self.scales = (train_scales(source, task.name, self.layers, self.splits.ids["train"], cfg.frames_memory_mb)
                       if cfg.normalize == "scale" else None)
        self.info: dict[str, Any] = {"tier": "frames", "normalize": cfg.normalize, "phones": len(inventory), "phones_in_train": len(train_phones),
                                     "splits": self.splits.describe()}

    def build(self, hp: dict[str, Any], seed: int) -> FrameProbe:
        """A fresh probe seeded with ``seed``."""
        torch.manual_seed(seed)
        return FrameProbe(self.dims, len(self.vocab), int(hp.get("hidden", self.cfg.hidden)), self.cfg.normalize, self.scales)

    def _batches(self, split: str, shuffle: bool, seed: int) -> Iterable[tuple[list[str], list[torch.Tensor], torch.Tensor]]:
        return split_batches(self.source, self.task.name, self.layers, self.splits.ids[split], self.cfg.batch_size,
                             shuffle_buffer=self.cfg.shuffle_buffer if shuffle else 0, seed=seed, hold_mb=self.cfg.frames_memory_mb)

    def train_batches(self, epoch: int, seed: int) -> Iterable[Any]:
        """Streamed, buffer-shuffled padded batches of the train split."""
        return self._batches("train", True, seed * 100003 + epoch)

    def loss(self, model: FrameProbe, batch: tuple) -> torch.Tensor:
        """CTC loss (blank 0, infeasible alignments zeroed) averaged over utterances."""
        ids, frames, lengths = batch
        device = next(model.parameters()).device
        return self._ctc(model([x.to(device) for x in frames]), ids, lengths, "mean")

    def _ctc(self, logits: torch.Tensor, ids: list[str], lengths: torch.Tensor, reduction: str) -> torch.Tensor:
        """CTC loss of per-frame logits against the utterances' phone sequences (``layerlab.probe.tasks.ctc``)."""
        return ctc_loss(logits, lengths, [self.targets[u] for u in ids], reduction=reduction)

    def evaluate(self, model: FrameProbe, split: str) -> Evaluation:
        """Phone error rate (edits / reference phones) of greedy CTC decoding; intervals over speakers; mean CTC loss in ``extra``."""
        edits, refs, order = [], [], []
        model.eval()
        device = next(model.parameters()).device
        loss_sum = 0.0
        with torch.no_grad():
            for ids, frames, lengths in self._batches(split, False, 0):
                logits = model([x.to(device) for x in frames])
                loss_sum += float(self._ctc(logits, ids, lengths, "sum"))
                hyps = greedy_ctc(logits, lengths)
                for u, h in zip(ids, hyps):
                    ref = self.targets[u]
                    edits.append(edit_distance(ref, h))
                    refs.append(len(ref))
                    order.append(u)
        e, r = np.asarray(edits, dtype=np.float64), np.asarray(refs, dtype=np.float64)

        def metrics(idx: np.ndarray) -> dict[str, float]:
            return {"per": float(e[idx].sum() / max(r[idx].sum(), 1.0))}

        groups, grouping = speaker_groups([str(self.rows.at[u, "speaker"]) for u in order], order)
        return Evaluation(metrics(np.ones(len(e), dtype=bool)), n=len(e), units="utterances", statistic=metrics, groups=groups, grouping=grouping,
                          extra={"loss": loss_sum / max(len(e), 1)})

    def importance(self, model: FrameProbe) -> tuple[np.ndarray, np.ndarray]:
        """(softmax weights, contribution shares): each layer's term spread over the training frames (exact)."""
        return model.featurizer.importance(frames_spread(model.featurizer, self.source, self.task.name, self.layers, self.splits.ids["train"],
                                                         self.cfg.batch_size, self.cfg.frames_memory_mb))


def _bind(source: ProbeSource, task: TaskDef, cfg: ProbeConfig, layers: list[str]) -> BoundPhoneTask:
    return BoundPhoneTask(source, task, cfg, layers)


TASK = TaskDef(name="pr", spec_names=("pr",), tier="frames", primary="per", higher_is_better={"per": False}, bind=_bind,
               description="phone recognition: frame-level linear + CTC, greedy decoding, PER", frame_targets=True,
               split_rows=phone_rows)

"""Utterance classification (KS, IC, SID, style/ER): weighted sum -> ``Linear(H, 256)`` -> mean pool -> ``Linear``.

The head is affine before pooling, so per-utterance layer means are a sufficient statistic: with
``tier="pooled"`` it trains on the pooled tier (no frames read); with ``tier="frames"`` (or
``normalize: layer_norm``) it streams frames. ``normalize: scale`` (the default) divides each layer
by its RMS over the training split, a scalar, so the pooled shortcut stays exact. IC has several label slots: one output block each, accuracy counts an
utterance right only when every slot is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from layerlab.metrics import accuracy
from layerlab.probe.config import ProbeConfig
from layerlab.probe.evaluation import Evaluation, speaker_groups
from layerlab.probe.featurizer import WeightedSum, sum_width
from layerlab.probe.heads import MeanPoolLinear
from layerlab.probe.source import ProbeSource, check_finite, input_error
from layerlab.probe.tasks.base import (
    Splits,
    TaskDef,
    check_labels_seen,
    check_tier,
    find_spec,
    labelled_rows,
    resolve_splits,
)
from layerlab.probe.tasks.frames import aligned_utterances, batched, frames_spread, pooled_stats, train_scales


class UtteranceProbe(nn.Module):
    """Featurizer + mean-pool head; ``forward_pooled`` on layer means equals ``forward_frames`` on the frames."""

    def __init__(self, dims: list[int], num_outputs: int, hidden: int = 256, normalize: str | bool = "none",
                 scales: np.ndarray | None = None) -> None:
        super().__init__()
        self.featurizer = WeightedSum(dims, normalize=normalize, project_to=sum_width(dims, hidden), scales=scales)
        self.head = MeanPoolLinear(self.featurizer.out_dim, num_outputs, hidden)

    def forward_pooled(self, means: list[torch.Tensor]) -> torch.Tensor:
        """Logits from per-layer utterance means ``[B, D_l]``."""
        return self.head.forward_pooled(self.featurizer(means))

    def forward_frames(self, frames: list[torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        """Logits from per-layer padded frames ``[B, T, D_l]`` on one timeline."""
        return self.head.forward_frames(self.featurizer(frames), lengths)


def constant_pooled_layers(layers: list[str], means: list[np.ndarray], rel_tol: float = 1e-4) -> list[str]:
    """Layers whose per-utterance mean vectors do not vary across utterances (nothing for a pooled probe to learn)."""
    out = []
    for name, x in zip(layers, means):
        spread = float(np.std(x, axis=0, dtype=np.float64).max()) if len(x) > 1 else 0.0
        if len(x) > 1 and spread <= rel_tol * max(1.0, float(np.abs(x).max())):
            out.append(name)
    return out


class BoundUtteranceTask:
    """An utterance-classification task bound to a source, splits and layers."""

    def __init__(self, source: ProbeSource, task: TaskDef, cfg: ProbeConfig, layers: list[str], keys: list[str] | None = None) -> None:
        spec = find_spec(source, task)
        cfg = cfg.for_tier(reads_frames=False)  # normalize auto -> scale on either tier (keeps the pooled tier exact)
        self.source, self.task, self.cfg, self.layers = source, task, cfg, list(layers)
        self.keys = list(keys or spec.label_keys)
        self.tier = "frames" if (cfg.tier == "frames" or cfg.normalize == "layer_norm") else "pooled"
        check_tier(source, task.name, self.tier)
        self.rows = labelled_rows(source, task.name, self.keys)
        strata = [str(s) for s in self.rows[f"y_{self.keys[0]}"]]
        self.splits = resolve_splits(source, task.name, spec, self.rows, cfg, strata=strata, speaker_disjoint=False)
        dropped = drop_unseen(self.rows, self.splits, self.keys) if cfg.drop_unseen_labels else {}
        for split, n in dropped.items():
            if not self.splits.ids[split]:
                raise input_error(source.url, task.name, f"split {split!r} has no examples left after dropping {n} with labels unseen in train")
        self.classes = {k: check_labels_seen(source, task.name, self.rows, self.splits, k) for k in self.keys}
        for k in self.keys:  # keep declared class order when the contract lists them (labels outside it are errors)
            declared = list(getattr(spec, "classes", {}).get(k, []))
            if declared:
                extra = sorted(set(self.classes[k]) - set(declared))
                if extra:
                    raise input_error(source.url, task.name, f"labels {extra[:5]} of key {k!r} are not among the declared classes")
                self.classes[k] = declared
        self.targets = np.stack([self.rows[f"y_{k}"].map({c: i for i, c in enumerate(self.classes[k])}).to_numpy(np.int64)
                                 for k in self.keys], axis=1)
        self.position = {u: i for i, u in enumerate(self.rows.index)}
        self.dims = [next(l.dim for l in source.layers if l.name == n) for n in self.layers]
        self.primary = task.primary
        self.higher_is_better = task.higher_is_better[task.primary]
        self._means: list[np.ndarray] | None = None
        self.last_loss = float("nan")  # mean cross-entropy of the last predict (early stopping breaks metric ties with it)
        if self.tier == "pooled":
            self._load_pooled()
        train = self.splits.ids["train"]
        self.scales = train_scales(source, task.name, self.layers, train, cfg.frames_memory_mb) if cfg.normalize == "scale" else None
        self.info: dict[str, Any] = {"tier": self.tier, "normalize": cfg.normalize, "label_keys": self.keys, "classes": {k: len(v) for k, v in self.classes.items()},
                                     "test_classes": {k: int(self.rows.loc[self.splits.ids["test"], f"y_{k}"].nunique()) for k in self.keys},
                                     "splits": self.splits.describe(), "dropped_unseen_labels": dropped}
        constant = constant_pooled_layers(self.layers, self._means) if self._means is not None else []
        if constant:
            self.info["notes"] = [f"layer(s) {', '.join(constant)}: the mean-pooled features are the same for every utterance "
                                  "(per-utterance mean normalisation, as in SUPERB's FBANK/MFCC baselines), so a pooled-tier "
                                  "probe of them is at chance by construction"]

    def _load_pooled(self) -> None:
        pooled = self.source.pooled()
        where = {u: i for i, u in enumerate(pooled.ids)}
        missing = [u for u in self.rows.index if u not in where]
        if missing:
            raise input_error(self.source.url, self.task.name, f"{len(missing)} labelled utterances are not in the pooled tier (e.g. {missing[0]!r})")
        index = np.array([where[u] for u in self.rows.index])
        self._means = []
        for n in self.layers:
            x = np.asarray(pooled.mean[n])[index]
            if not np.isfinite(x).all():
                bad = self.rows.index[int(np.nonzero(~np.isfinite(x).all(axis=1))[0][0])]
                check_finite(self.source, self.task.name, str(bad), n, x)
            self._means.append(x)

    def build(self, hp: dict[str, Any], seed: int) -> UtteranceProbe:
        """A fresh probe seeded with ``seed``."""
        torch.manual_seed(seed)
        return UtteranceProbe(self.dims, sum(len(self.classes[k]) for k in self.keys), int(hp.get("hidden", self.cfg.hidden)), self.cfg.normalize,
                              self.scales)

    def _pooled_batch(self, ids: list[str]) -> tuple[list[torch.Tensor], torch.Tensor]:
        assert self._means is not None
        pos = np.array([self.position[u] for u in ids])
        return [torch.from_numpy(np.array(m[pos], dtype=np.float32)) for m in self._means], torch.from_numpy(self.targets[pos])

    def train_batches(self, epoch: int, seed: int) -> Iterable[Any]:
        """Shuffled minibatches of the train split (pooled: in memory; frames: streamed, bounded buffer)."""
        ids = self.splits.ids["train"]
        bs = self.cfg.batch_size
        if self.tier == "pooled":
            order = np.random.default_rng([seed, epoch]).permutation(len(ids))
            for start in range(0, len(ids), bs):
                yield ("pooled", *self._pooled_batch([ids[i] for i in order[start : start + bs]]))
        else:
            stream = aligned_utterances(self.source, self.task.name, self.layers, set(ids), shuffle_buffer=self.cfg.shuffle_buffer, seed=seed * 100003 + epoch,
                                        hold_mb=self.cfg.frames_memory_mb)
            for batch_ids, frames, lengths in batched(stream, bs):
                yield ("frames", frames, lengths, torch.from_numpy(self.targets[[self.position[u] for u in batch_ids]]))

    def logits(self, model: UtteranceProbe, batch: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, targets) of a pooled or frames batch, on the model's device."""
        device = next(model.parameters()).device
        if batch[0] == "pooled":
            return model.forward_pooled([x.to(device) for x in batch[1]]), batch[2].to(device)
        return model.forward_frames([x.to(device) for x in batch[1]], batch[2].to(device)), batch[3].to(device)

    def _slot_logits(self, logits: torch.Tensor) -> list[torch.Tensor]:
        sizes = [len(self.classes[k]) for k in self.keys]
        return list(torch.split(logits, sizes, dim=1))

    def loss(self, model: UtteranceProbe, batch: tuple) -> torch.Tensor:
        """Sum over label slots of the cross-entropy."""
        logits, targets = self.logits(model, batch)
        return sum(F.cross_entropy(part, targets[:, k]) for k, part in enumerate(self._slot_logits(logits)))  # type: ignore[return-value]

    def predict(self, model: UtteranceProbe, split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(ids, predicted class per slot ``[N, S]``, targets ``[N, S]``) on ``split``."""
        ids = self.splits.ids[split]
        order: list[str] = []
        preds, targets = [], []
        loss_sum = 0.0
        model.eval()
        with torch.no_grad():
            if self.tier == "pooled":
                batches: Iterable[tuple[list[str], tuple]] = (
                    (ids[s : s + 256], ("pooled", *self._pooled_batch(ids[s : s + 256]))) for s in range(0, len(ids), 256))
            else:
                batches = ((b, ("frames", f, n, torch.from_numpy(self.targets[[self.position[u] for u in b]])))
                           for b, f, n in batched(aligned_utterances(self.source, self.task.name, self.layers, set(ids), hold_mb=self.cfg.frames_memory_mb),
                                                   self.cfg.batch_size))
            for batch_ids, batch in batches:
                logits, y = self.logits(model, batch)
                slots = self._slot_logits(logits)
                loss_sum += float(sum(F.cross_entropy(part, y[:, k], reduction="sum") for k, part in enumerate(slots)))
                preds.append(torch.stack([p.argmax(1) for p in slots], 1).cpu().numpy())
                targets.append(y.cpu().numpy())
                order.extend(batch_ids)
        self.last_loss = loss_sum / max(len(order), 1)
        return order, np.concatenate(preds), np.concatenate(targets)

    def evaluate(self, model: UtteranceProbe, split: str) -> Evaluation:
        """Accuracy (all slots right) and, with several slots, per-slot accuracies; intervals over speakers."""
        ids, pred, y = self.predict(model, split)
        keys = self.keys

        def metrics(idx: np.ndarray) -> dict[str, float]:
            p, t = pred[idx], y[idx]
            out = {"accuracy": float(np.mean((p == t).all(axis=1)))}
            if len(keys) > 1:
                out.update({f"accuracy_{k}": accuracy(p[:, i], t[:, i]) for i, k in enumerate(keys)})
            return out

        groups, grouping = speaker_groups([str(self.rows.at[u, "speaker"]) for u in ids], ids)
        return Evaluation(metrics(np.ones(len(pred), dtype=bool)), n=len(pred), units="utterances", statistic=metrics,
                          groups=groups, grouping=grouping, extra={"loss": self.last_loss})

    def importance(self, model: UtteranceProbe) -> tuple[np.ndarray, np.ndarray]:
        """(softmax weights, contribution shares) over the training split: from pooled means/stds when affine, else from frames."""
        train = self.splits.ids["train"]
        stats = pooled_stats(self.source, self.layers, train) if model.featurizer.mode != "layer_norm" else None
        if stats is not None:
            return model.featurizer.importance(model.featurizer.spread_pooled(*stats))
        return model.featurizer.importance(frames_spread(model.featurizer, self.source, self.task.name, self.layers, train,
                                                         self.cfg.batch_size, self.cfg.frames_memory_mb))


def drop_unseen(rows: pd.DataFrame, splits: Splits, keys: list[str]) -> dict[str, int]:
    """Remove dev/test ids whose label (any key) never occurs in train; returns how many were dropped per split."""
    seen = {k: set(rows.loc[splits.ids["train"], f"y_{k}"]) for k in keys}
    dropped = {}
    for split in ("dev", "test"):
        keep = [u for u in splits.ids[split] if all(rows.at[u, f"y_{k}"] in seen[k] for k in keys)]
        if len(keep) < len(splits.ids[split]):
            dropped[split] = len(splits.ids[split]) - len(keep)
            splits.notes.append(f"{dropped[split]} {split} utterances dropped: label unseen in train")
            splits.ids[split] = keep
    return dropped


def utterance_task(name: str, spec_names: tuple[str, ...], description: str, keys: list[str] | None = None) -> TaskDef:
    """Declare an utterance-classification task reading contract task(s) ``spec_names``."""
    def bind(source: ProbeSource, task: TaskDef, cfg: ProbeConfig, layers: list[str]) -> BoundUtteranceTask:
        return BoundUtteranceTask(source, task, cfg, layers, keys)

    directions = {"accuracy": True}
    return TaskDef(name=name, spec_names=spec_names, tier="pooled", primary="accuracy", higher_is_better=directions,
                   bind=bind, description=description)

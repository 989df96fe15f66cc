"""Frame-wise phone classification: weighted sum -> ``Linear(H, 256)`` -> frame-wise linear -> cross-entropy; frame accuracy.

Needs phone alignments (sample spans). Each frame of the common timeline (the fastest frame layer)
gets the phone whose span holds the frame's centre, computed exactly from the layer's recorded hop
and frame convention (``LayerMeta.spans_to_frames``); frames outside every span are not scored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from layerlab.data.alignment import spans_of
from layerlab.probe.config import ProbeConfig
from layerlab.probe.evaluation import Evaluation, speaker_groups
from layerlab.probe.source import Layer, ProbeSource, input_error
from layerlab.probe.tasks.base import TaskDef, check_tier, find_spec, frames_held, resolve_splits
from layerlab.probe.tasks.frames import aligned_utterances, batched, frames_spread, train_scales
from layerlab.probe.tasks.pr import FrameProbe


def frame_labels(layer: Layer, alignment: Any, num_frames: int, index: dict[str, int]) -> np.ndarray:
    """Phone index per frame of ``layer`` (-1 where no span holds the frame centre)."""
    from layerlab.cache.layers import LayerMeta

    phones, starts, ends = spans_of(alignment)
    meta = LayerMeta(layer.name, layer.dim, layer.frame_rate_hz, layer.hop_samples, layer.frame_convention or "stride", layer.window_samples)
    span = meta.spans_to_frames(starts, ends, num_frames)
    lookup = np.array([index.get(p, -1) for p in phones] + [-1], dtype=np.int64)
    return lookup[span]  # span -1 -> the trailing -1


def aligned_rows(source: ProbeSource, task: TaskDef, spec: Any, cfg: ProbeConfig) -> tuple[pd.DataFrame, ProbeConfig]:
    """The rows with a phone alignment, and the config their splits are resolved with."""
    has = source.rows["alignment"].apply(lambda a: a is not None and len(a) > 0) if "alignment" in source.rows else None
    if has is None or not has.any():
        raise input_error(source.url, task.name, "no utterance carries a phone alignment (frame-wise PR needs sample spans)")
    return source.rows.loc[has.to_numpy()], cfg


class BoundFramePhoneTask:
    """Frame-wise phone classification bound to a source, splits and layers."""

    def __init__(self, source: ProbeSource, task: TaskDef, cfg: ProbeConfig, layers: list[str]) -> None:
        cfg = cfg.for_tier(reads_frames=True)  # normalize auto -> layer_norm (frames are read anyway)
        spec = find_spec(source, task)
        self.source, self.task, self.cfg, self.layers = source, task, cfg, list(layers)
        check_tier(source, task.name, "frames")
        self.rows, _ = aligned_rows(source, task, spec, cfg)
        frame_layers = [l for l in source.layers if l.name in self.layers and not l.utterance_level]
        if not frame_layers:
            raise input_error(source.url, task.name, f"layers {', '.join(self.layers)} are all utterance-level: no frames to label")
        if any(l.hop_samples is None for l in frame_layers):
            raise input_error(source.url, task.name, "the cache does not record each layer's hop, so spans cannot be mapped to frames")
        self.timeline = max(frame_layers, key=lambda l: l.frame_rate_hz or 0.0)
        self.splits = resolve_splits(source, task.name, spec, self.rows, cfg, strata=None, speaker_disjoint=True, frames=frames_held(source))
        declared = set(getattr(spec, "classes", {}).get(spec.label_keys[0] if spec.label_keys else "pr", []))
        train = sorted({p for u in self.splits.ids["train"] for p in spans_of(self.rows.at[u, "alignment"])[0]} | declared)
        for split in ("dev", "test"):
            unseen = sorted({p for u in self.splits.ids[split] for p in spans_of(self.rows.at[u, "alignment"])[0]} - set(train))
            if unseen:
                raise input_error(source.url, task.name, f"phone(s) {unseen[:5]} appear in {split} but never in train or the declared phone set")
        self.phones = train
        self.index = {p: i for i, p in enumerate(train)}
        self.dims = [next(l.dim for l in source.layers if l.name == n) for n in self.layers]
        self.primary, self.higher_is_better = task.primary, task.higher_is_better[task.primary]
        self.scales = (train_scales(source, task.name, self.layers, self.splits.ids["train"], cfg.frames_memory_mb)
                       if cfg.normalize == "scale" else None)
        self.info: dict[str, Any] = {"tier": "frames", "normalize": cfg.normalize, "phones": len(train), "timeline_layer": self.timeline.name,
                                     "frame_convention": self.timeline.frame_convention, "splits": self.splits.describe()}

    def build(self, hp: dict[str, Any], seed: int) -> FrameProbe:
        """A fresh probe seeded with ``seed``."""
        torch.manual_seed(seed)
        return FrameProbe(self.dims, len(self.phones), int(hp.get("hidden", self.cfg.hidden)), self.cfg.normalize, self.scales)

    def _labels(self, ids: list[str], lengths: torch.Tensor, width: int) -> torch.Tensor:
        out = torch.full((len(ids), width), -1, dtype=torch.long)
        for i, (u, n) in enumerate(zip(ids, lengths.tolist())):
            out[i, :n] = torch.from_numpy(frame_labels(self.timeline, self.rows.at[u, "alignment"], int(n), self.index))
        return out

    def _batches(self, split: str, shuffle: bool, seed: int) -> Iterable[tuple[list[str], list[torch.Tensor], torch.Tensor, torch.Tensor]]:
        stream = aligned_utterances(self.source, self.task.name, self.layers, set(self.splits.ids[split]),
                                    shuffle_buffer=self.cfg.shuffle_buffer if shuffle else 0, seed=seed, hold_mb=self.cfg.frames_memory_mb)
        for ids, frames, lengths in batched(stream, self.cfg.batch_size):
            yield ids, frames, lengths, self._labels(ids, lengths, frames[0].shape[1])

    def train_batches(self, epoch: int, seed: int) -> Iterable[Any]:
        """Streamed, buffer-shuffled padded batches with per-frame phone targets (-1: not scored)."""
        return self._batches("train", True, seed * 100003 + epoch)

    def loss(self, model: FrameProbe, batch: tuple) -> torch.Tensor:
        """Cross-entropy over labelled frames."""
        _, frames, _, labels = batch
        device = next(model.parameters()).device
        logits = model([x.to(device) for x in frames])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.to(device).reshape(-1), ignore_index=-1)

    def evaluate(self, model: FrameProbe, split: str) -> Evaluation:
        """Frame accuracy over labelled frames; intervals over speakers."""
        correct, total, order = [], [], []
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            for ids, frames, _, labels in self._batches(split, False, 0):
                order.extend(ids)
                pred = model([x.to(device) for x in frames]).argmax(-1).cpu()
                mask = labels >= 0
                correct += ((pred == labels) & mask).sum(1).tolist()
                total += mask.sum(1).tolist()
        c, t = np.asarray(correct, dtype=np.float64), np.asarray(total, dtype=np.float64)

        def metrics(idx: np.ndarray) -> dict[str, float]:
            return {"frame_accuracy": float(c[idx].sum() / max(t[idx].sum(), 1.0))}

        groups, grouping = speaker_groups([str(self.rows.at[u, "speaker"]) for u in order], order)
        ev = Evaluation(metrics(np.ones(len(c), dtype=bool)), n=int(t.sum()), units="frames", statistic=metrics, groups=groups, grouping=grouping)
        ev.extra["utterances"] = float(len(c))
        return ev

    def importance(self, model: FrameProbe) -> tuple[np.ndarray, np.ndarray]:
        """(softmax weights, contribution shares): each layer's term spread over the training frames (exact)."""
        return model.featurizer.importance(frames_spread(model.featurizer, self.source, self.task.name, self.layers, self.splits.ids["train"],
                                                         self.cfg.batch_size, self.cfg.frames_memory_mb))


def _bind(source: ProbeSource, task: TaskDef, cfg: ProbeConfig, layers: list[str]) -> BoundFramePhoneTask:
    return BoundFramePhoneTask(source, task, cfg, layers)


TASK = TaskDef(name="pr-frame", spec_names=("pr",), tier="frames", primary="frame_accuracy", higher_is_better={"frame_accuracy": True},
               bind=_bind, description="frame-wise phone classification from alignments (exact span -> frame mapping)", frame_targets=True,
               split_rows=aligned_rows)

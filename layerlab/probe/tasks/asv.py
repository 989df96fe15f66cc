"""ASV: weighted sum -> x-vector (TDNN + statistics pooling) trained with AM-softmax (s=30, m=0.4) on the
training speakers; cosine scoring of trials on held-out speakers; EER and normalised minDCF.

Training crops are ``asv.crop_seconds`` long (SUPERB: 8 s), converted to frames on the layers' common
timeline, so a 50 Hz and a 100 Hz model see the same stretch of audio.

Dev trials come from training speakers held out of the classifier (speaker-disjoint, seeded), so early
stopping never looks at the test speakers (SUPERB reports the best *test* EER; we do not).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from layerlab.probe.config import ProbeConfig
from layerlab.probe.evaluation import Evaluation
from layerlab.probe.featurizer import WeightedSum, sum_width
from layerlab.probe.heads import AMSoftmax, XVector
from layerlab.probe.source import ProbeSource, input_error
from layerlab.probe.tasks.base import TaskDef, check_tier, find_spec, frames_held, resolve_splits
from layerlab.probe.tasks.frames import aligned_utterances, batched, frames_spread, train_scales
from layerlab.probe.tasks.trials import (
    Trials,
    derived_trials,
    score_trials,
    table_trials,
)


class SpeakerProbe(nn.Module):
    """Featurizer + x-vector embedding + AM-softmax classifier over the training speakers."""

    def __init__(self, dims: list[int], num_speakers: int, cfg: ProbeConfig, normalize: str | bool = "none") -> None:
        super().__init__()
        a = cfg.asv
        self.featurizer = WeightedSum(dims, normalize=normalize, project_to=sum_width(dims, a.proj))
        self.xvector = XVector(self.featurizer.out_dim, a.proj, a.tdnn, a.agg, a.embed)
        self.loss_head = AMSoftmax(a.embed, num_speakers, a.scale, a.margin)

    def embed(self, frames: list[torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        """Utterance embeddings ``[B, E]`` scored in trials (s3prl's inference output: ``linear1`` + ReLU)."""
        return self.xvector(self.featurizer(frames), lengths)

    def train_output(self, frames: list[torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        """What the AM-softmax loss is trained on (s3prl's ``UtteranceExtractor.forward``)."""
        return self.xvector.train_output(self.featurizer(frames), lengths)


def crop_frames(seconds: float, rates_hz: list[float | None]) -> int | None:
    """Frames of a ``seconds`` crop on the layers' common timeline (their fastest frame rate); None: utterance-level only."""
    rates = [r for r in rates_hz if r is not None]
    return max(1, int(round(seconds * max(rates)))) if rates else None


def speaker_rows(source: ProbeSource, task: TaskDef, spec: Any, cfg: ProbeConfig) -> tuple[pd.DataFrame, ProbeConfig]:
    """The rows with a speaker, and the config the splits are resolved with (dev: ``asv.dev_speaker_fraction`` of the speakers)."""
    rows = source.rows
    return rows.loc[rows["speaker"].astype(str) != ""], cfg.model_copy(update={"derived_dev_fraction": cfg.asv.dev_speaker_fraction})


class BoundASVTask:
    """ASV bound to a source, speaker-disjoint splits, trial lists and layers."""

    def __init__(self, source: ProbeSource, task: TaskDef, cfg: ProbeConfig, layers: list[str]) -> None:
        # normalize auto -> scale: the x-vector pools statistics over frames, and per-frame layer norm removed what it
        # pools (demo GE2E cache, weighted-sum test EER: layer_norm 46.0 %, scale 28.3 %, none 26.8 %)
        cfg = cfg.for_tier(reads_frames=False)
        spec = find_spec(source, task)
        self.source, self.task, self.cfg, self.layers = source, task, cfg, list(layers)
        check_tier(source, task.name, "frames")
        if cfg.derived_split == "stratified":
            raise input_error(source.url, task.name, "verification needs speakers disjoint between training and trials; "
                                                     "derived_split 'stratified' would mix them (use auto or speaker)")
        self.rows, dev_cfg = speaker_rows(source, task, spec, cfg)
        self.splits = resolve_splits(source, task.name, spec, self.rows, dev_cfg, strata=None, speaker_disjoint=True, frames=frames_held(source))
        train_speakers = sorted(set(self.rows.loc[self.splits.ids["train"], "speaker"].astype(str)))
        self.speaker_index = {s: i for i, s in enumerate(train_speakers)}
        self.trials: dict[str, Trials] = {}
        for split in ("dev", "test"):
            ids = self.splits.ids[split]
            table = getattr(spec, "trials", None)
            if split == "test" and table:
                self.trials[split] = table_trials(source, task.name, table, set(ids))
            else:
                self.trials[split] = derived_trials(ids, [str(s) for s in self.rows.loc[ids, "speaker"]], cfg.split_seed)
        self.dims = [next(l.dim for l in source.layers if l.name == n) for n in self.layers]
        rates = {l.name: l.frame_rate_hz for l in source.layers}
        self.crop = crop_frames(cfg.asv.crop_seconds, [rates[n] for n in self.layers])
        self.primary, self.higher_is_better = task.primary, task.higher_is_better[task.primary]
        self.scales = (train_scales(source, task.name, self.layers, self.splits.ids["train"], cfg.frames_memory_mb)
                       if cfg.normalize == "scale" else None)
        self.info: dict[str, Any] = {
            "tier": "frames", "normalize": cfg.normalize, "train_speakers": len(train_speakers), "crop_seconds": cfg.asv.crop_seconds, "crop_frames": self.crop, "splits": self.splits.describe(),
            "trials": {k: {"n": len(t.label), "targets": int(t.label.sum()), "source": t.source, "dropped_unknown": t.dropped_unknown}
                       for k, t in self.trials.items()},
        }

    def build(self, hp: dict[str, Any], seed: int) -> SpeakerProbe:
        """A fresh probe seeded with ``seed``."""
        torch.manual_seed(seed)
        # the x-vector's widths come from cfg.asv (SUPERB: 512); ``hidden`` sizes the small heads of the other tasks
        probe = SpeakerProbe(self.dims, len(self.speaker_index), self.cfg, self.cfg.normalize)
        if self.scales is not None:
            probe.featurizer.set_scales(self.scales)
        return probe

    def train_batches(self, epoch: int, seed: int) -> Iterable[Any]:
        """Random crops of streamed, buffer-shuffled training utterances with their speaker indices."""
        rng = np.random.default_rng([seed, epoch, 0xC0])
        crop = self.crop
        stream = aligned_utterances(self.source, self.task.name, self.layers, set(self.splits.ids["train"]),
                                    shuffle_buffer=self.cfg.shuffle_buffer, seed=seed * 100003 + epoch, hold_mb=self.cfg.frames_memory_mb)

        def cropped() -> Iterable[tuple[str, list[np.ndarray]]]:
            for uid, frames in stream:
                n = frames[0].shape[0]
                if crop is None or n <= crop:
                    yield uid, frames
                    continue
                start = int(rng.integers(0, n - crop + 1))
                yield uid, [f[start : start + crop] for f in frames]

        for ids, frames, lengths in batched(iter(cropped()), self.cfg.batch_size):
            spk = torch.tensor([self.speaker_index[str(self.rows.at[u, "speaker"])] for u in ids], dtype=torch.long)
            yield frames, lengths, spk

    def loss(self, model: SpeakerProbe, batch: tuple) -> torch.Tensor:
        """AM-softmax loss of the batch's embeddings."""
        frames, lengths, spk = batch
        device = next(model.parameters()).device
        return model.loss_head(model.train_output([x.to(device) for x in frames], lengths.to(device)), spk.to(device))

    def embeddings(self, model: SpeakerProbe, ids: set[str]) -> dict[str, np.ndarray]:
        """Full-length embeddings of ``ids``: utterances of similar length batched together (padding is masked)."""
        model.eval()
        device = next(model.parameters()).device
        out: dict[str, np.ndarray] = {}
        utterances = sorted(aligned_utterances(self.source, self.task.name, self.layers, ids, hold_mb=self.cfg.frames_memory_mb),
                            key=lambda item: item[1][0].shape[0])
        with torch.no_grad():
            for batch_ids, frames, lengths in batched(iter(utterances), self.cfg.batch_size):
                emb = model.embed([x.to(device) for x in frames], lengths.to(device)).cpu().numpy()
                out.update(zip(batch_ids, emb))
        return out

    def evaluate(self, model: SpeakerProbe, split: str) -> Evaluation:
        """EER and normalised minDCF of cosine-scored trials, resampled over trials."""
        trials = self.trials[split]
        speaker_of = {u: str(self.rows.at[u, "speaker"]) for u in trials.ids()}
        return score_trials(trials, self.embeddings(model, trials.ids()), self.cfg.asv.p_target, speaker_of)

    def importance(self, model: SpeakerProbe) -> tuple[np.ndarray, np.ndarray]:
        """(softmax weights, contribution shares) over the training frames."""
        return model.featurizer.importance(frames_spread(model.featurizer, self.source, self.task.name, self.layers, self.splits.ids["train"],
                                                         self.cfg.batch_size, self.cfg.frames_memory_mb))


def _bind(source: ProbeSource, task: TaskDef, cfg: ProbeConfig, layers: list[str]) -> BoundASVTask:
    return BoundASVTask(source, task, cfg, layers)


TASK = TaskDef(name="asv", spec_names=("asv",), tier="frames", primary="eer", higher_is_better={"eer": False, "min_dcf": False},
               bind=_bind, description="speaker verification: x-vector + AM-softmax, cosine scoring, EER/minDCF", split_rows=speaker_rows)

__all__ = ["TASK", "BoundASVTask", "SpeakerProbe"]

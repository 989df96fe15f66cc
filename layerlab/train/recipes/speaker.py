"""What the two ECAPA recipes share: training-set checks, the crop stream, augmentation, trial EER, export."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from layerlab.train.augment import Augmenter
from layerlab.train.config import TrainConfig
from layerlab.train.data import Clip, select_training, stream_utterances
from layerlab.train.ecapa import EcapaBackbone, embed_all
from layerlab.train.evaluate import Trials, cosine_eer, load_trials
from layerlab.train.recipes.base import WorkerInfo


def training_set(config: TrainConfig, info: WorkerInfo, shortest_crop: float) -> Any:
    """Select the training utterances and check there are enough for one global batch."""
    ts = select_training(info.data, shortest_crop, min_seconds=config.min_seconds, short_audio=config.short_audio,
                         exclude=config.exclude_speakers)
    need = config.batch_size * info.world
    if len(ts.ids) < need:
        raise ValueError(
            f"{info.data}: {len(ts.ids)} training utterances (after holding out {len(ts.excluded_speakers)} evaluation speakers "
            f"and skipping {ts.skipped_short} short ones) are fewer than one global batch ({need})"
        )
    return ts


class CropSource:
    """Batches of utterances from this rank's stream; crops with independent augmentation."""

    def __init__(self, config: TrainConfig, info: WorkerInfo, ts: Any, augment: Any):
        self.batch_size = config.batch_size
        self.stream = stream_utterances(ts, seed=config.seed, rank=info.rank, world=info.world)
        self.augmenter = Augmenter(augment)
        self.device = info.device

    def clips(self) -> list[Clip]:
        return [next(self.stream) for _ in range(self.batch_size)]

    def crops(self, clips: list[Clip], length: int, rng: np.random.Generator, augment: bool = True) -> torch.Tensor:
        from layerlab.train.data import random_crop

        out = []
        for c in clips:
            wav = random_crop(c.wav, length, rng)
            out.append(self.augmenter(wav, rng) if augment else wav)
        return torch.from_numpy(np.stack(out)).to(self.device)


    def view_crops(self, clips: list[Clip], lengths: list[int], rng: np.random.Generator,
                   disjoint: bool) -> list[torch.Tensor]:
        """One augmented [B, S_v] batch per view length; with ``disjoint`` the views of an utterance lie on
        non-overlapping stretches when it is long enough (else, and for the rest, at random offsets)."""
        from layerlab.train.data import disjoint_starts, random_crop

        views: list[list[np.ndarray]] = [[] for _ in lengths]
        self.disjoint_count = getattr(self, "disjoint_count", 0)
        for c in clips:
            starts = disjoint_starts(c.wav.shape[0], lengths, rng) if disjoint else None
            self.disjoint_count += starts is not None
            for v, length in enumerate(lengths):
                wav = (c.wav[starts[v]:starts[v] + length].astype(np.float32, copy=True) if starts is not None
                       else random_crop(c.wav, length, rng))
                views[v].append(self.augmenter(wav, rng))
        return [torch.from_numpy(np.stack(v)).to(self.device) for v in views]


def eval_trials(config: TrainConfig, info: WorkerInfo) -> Trials | None:
    """Held-out ASV trials for rank 0's per-epoch EER (None elsewhere or when the corpus has none)."""
    if info.rank != 0:
        return None
    return load_trials(info.data, config.eval_max_utterances, config.seed)


def backbone_eer(backbone: EcapaBackbone, trials: Trials | None, device: torch.device) -> dict[str, float]:
    """{"eer": ...} of ``backbone`` on the trials ({} without trials)."""
    if trials is None:
        return {}
    emb = embed_all(backbone, trials.wavs, device)
    if not torch.isfinite(emb).all():
        return {"eer": float("nan")}
    return {"eer": cosine_eer(emb, trials)}


def export_ecapa(backbone: EcapaBackbone, url: str, meta: dict[str, Any]) -> dict[str, str]:
    """Write ``backbone`` as a layerlab-ecapa-v1 checkpoint; it loads as ``ckpt:URL``."""
    from layerlab.models.formats import ecapa

    ecapa.write(url, backbone.config, backbone.export_state(), meta)
    return {"checkpoint": url, "model_spec": f"ckpt:{url}"}

"""Miniature HuBERT: masked prediction of k-means cluster ids with s3prl's HubertModel.

Iteration 1 clusters 39-d MFCC frames (13 + deltas, per-utterance CMVN) at 50 Hz; iteration 2
(``targets: layer``) clusters a layer of a trained model (e.g. iteration 1's middle layer). The
checkpoint is s3prl's converted HuBERT format, so ``s3prl:hubert_local:URL`` (and ``ckpt:URL``)
load it with 50 Hz frame layers hidden_0..hidden_L. Evaluation: accuracy of the masked frames'
predicted cluster on held-out speakers' utterances, with the chance rates (1/K, and the frequency of the most common cluster among the evaluation frames).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from layerlab.kmeans import kmeans
from layerlab.train.config import HubertTrainConfig
from layerlab.train.data import (
    crop_length,
    load_utterances,
    random_crop,
    select_training,
    stream_utterances,
)
from layerlab.train.recipes.base import Recipe, WorkerInfo, prepare, unwrap

SAMPLE_RATE = 16000
LABEL_RATE = 50.0
EVAL_MAX_SECONDS = 4.0


@contextmanager
def numpy_global_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global generator for a block, then restore it: fairseq's span masking draws from it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def mfcc_frames(wav: np.ndarray) -> torch.Tensor:
    """[T, 39] MFCC + deltas with per-utterance CMVN at 50 Hz (25 ms window, 20 ms shift, snip edges):
    ``1 + (len - 400) // 320`` frames, the frame count of HuBERT's conv stack."""
    import torchaudio

    from layerlab.models.baseline_features import add_deltas, utterance_cmvn

    x = torch.as_tensor(wav, dtype=torch.float32)[None] * 32768.0
    feats = torchaudio.compliance.kaldi.mfcc(x, sample_frequency=SAMPLE_RATE, frame_length=25.0, frame_shift=20.0,
                                             num_ceps=13, dither=0.0, energy_floor=0.0, snip_edges=True)
    return utterance_cmvn(add_deltas(feats))


class HubertRecipe(Recipe):
    """HuBERT masked prediction; iteration 1 (MFCC targets) or 2 (a teacher layer's targets)."""

    name = "hubert"
    primary_metric = "masked_acc"
    higher_is_better = True

    def __init__(self, config: HubertTrainConfig, info: WorkerInfo):
        from s3prl.upstream.hubert.hubert_model import (
            HubertConfig,
            HubertModel,
            HubertPretrainingConfig,
        )
        from s3prl.upstream.utils import merge_with_parent

        super().__init__(config, info)
        self.config: HubertTrainConfig = config
        self.training = select_training(info.data, config.crop_seconds[0], min_seconds=config.min_seconds,
                                        short_audio=config.short_audio, exclude=config.exclude_speakers)
        if len(self.training.ids) < config.batch_size * info.world:
            raise ValueError(f"{info.data}: {len(self.training.ids)} training utterances are fewer than one global batch "
                             f"({config.batch_size * info.world})")
        self.teacher = None
        if config.targets == "layer":
            from layerlab.models import load

            self.teacher = load(config.teacher, device=info.device)
            frame_layers = [layer.name for layer in self.teacher.layers if layer.frame_rate is not None]
            self.teacher_layer = config.teacher_layer or frame_layers[len(frame_layers) // 2]
            if self.teacher_layer not in frame_layers:
                raise ValueError(f"teacher {config.teacher}: no frame-level layer {self.teacher_layer!r}; layers: {frame_layers}")
        self.task_cfg = {"label_rate": LABEL_RATE, "sample_rate": SAMPLE_RATE, "normalize": False}
        self.model_cfg = {**config.model.model_dump(), "label_rate": LABEL_RATE}
        self.symbols = [[str(i) for i in range(config.clusters)]]
        torch.manual_seed(config.seed)
        model = HubertModel(merge_with_parent(HubertConfig, dict(self.model_cfg)),
                            merge_with_parent(HubertPretrainingConfig, dict(self.task_cfg)), self.symbols)
        self.model = prepare(model, info, find_unused_parameters=config.model.encoder_layerdrop > 0)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                           betas=(0.9, 0.98), eps=1e-6)
        self.stream = stream_utterances(self.training, seed=config.seed, rank=info.rank, world=info.world)
        self.centroids: torch.Tensor | None = None  # fitted lazily (restored from a checkpoint on resume)
        self.eval_wavs = self._eval_set() if info.rank == 0 else []

    # -- targets ------------------------------------------------------------------------------
    def frame_features(self, wav: np.ndarray) -> torch.Tensor:
        """[T, D] features that k-means clusters: MFCC (iteration 1) or the teacher's layer (iteration 2)."""
        n = 1 + (len(wav) - 400) // 320
        if self.teacher is None:
            return mfcc_frames(wav)[:n]
        out = self.teacher(torch.as_tensor(wav, dtype=torch.float32)[None])
        frames, lengths = out.layer(self.teacher_layer)
        return frames[0, : min(n, int(lengths[0]))].float().cpu()

    def fit_kmeans(self) -> None:
        """Sample frames from the training stream (same on every rank) and fit the centroids."""
        c = self.config
        stream = stream_utterances(self.training, seed=c.seed + 7919, rank=0, world=1)
        feats, total = [], 0
        rng = np.random.default_rng(c.seed)
        while total < c.kmeans_frames:
            f = self.frame_features(next(stream).wav)
            keep = f[rng.random(len(f)) < 0.5]
            feats.append(keep)
            total += len(keep)
        x = torch.cat(feats)[: c.kmeans_frames]
        self.centroids = kmeans(x, c.clusters, c.kmeans_iters, c.seed)
        print(f"[hubert] k-means: {c.clusters} clusters on {len(x)} {'MFCC' if self.teacher is None else self.teacher_layer} frames", flush=True)

    def labels(self, wav: np.ndarray) -> torch.Tensor:
        """Cluster id of every frame of ``wav``."""
        assert self.centroids is not None
        return torch.cdist(self.frame_features(wav), self.centroids).argmin(1)

    # -- training -----------------------------------------------------------------------------
    def train_step(self, epoch: int, step: int, rng: np.random.Generator) -> dict[str, float]:
        if self.centroids is None:
            self.fit_kmeans()
        length = crop_length(self.config.crop_seconds, rng)
        wavs = [random_crop(next(self.stream).wav, length, rng) for _ in range(self.config.batch_size)]
        x = torch.from_numpy(np.stack(wavs)).to(self.info.device)
        y = torch.stack([self.labels(w) for w in wavs]).to(self.info.device)
        lr = self.set_lr(step)
        self.model.train()
        with numpy_global_seed(int(rng.integers(2**32))):  # masks from the step's seed: reruns and resumes draw the same spans
            out = self.model(x, target_list=[y], padding_mask=torch.zeros_like(x, dtype=torch.bool), mask=True)
        core = unwrap(self.model)
        logits = core.get_logits(out, True)[0]
        targets = core.get_targets(out, True)[0]
        loss = F.cross_entropy(logits, targets) + self.config.features_pen_weight * out["features_pen"]
        if self.config.unmasked_weight > 0:
            logits_u = core.get_logits(out, False)[0]
            loss = loss + self.config.unmasked_weight * F.cross_entropy(logits_u, core.get_targets(out, False)[0])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.clip(self.model.parameters())
        self.optimizer.step()
        acc = float((logits.detach().argmax(1) == 0).float().mean())
        return {"loss": float(loss.detach()), "masked_acc": acc, "lr": lr}

    # -- evaluation ---------------------------------------------------------------------------
    def _eval_set(self) -> list[np.ndarray]:
        """Utterances of the held-out ASV speakers (never trained on), first 4 s each."""
        from layerlab.data.shards import read_metadata

        meta = read_metadata(self.info.data, columns=("id", "speaker", "num_samples"))
        held = set(self.training.held_out_speakers)
        ids = [u for u, s, n in zip(meta.column("id").to_pylist(), meta.column("speaker").to_pylist(),
                                   meta.column("num_samples").to_pylist()) if s in held and n >= SAMPLE_RATE]
        if not ids:
            raise ValueError(f"{self.info.data}: no held-out speakers (splits.asv == 'test') to evaluate masked prediction on")
        ids = sorted(np.random.default_rng(self.config.seed).choice(ids, size=min(len(ids), self.config.eval_utterances), replace=False).tolist())
        wavs = load_utterances(self.info.data, ids)
        return [wavs[u][: int(EVAL_MAX_SECONDS * SAMPLE_RATE)] for u in ids]

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict[str, float]:
        if self.centroids is None:
            self.fit_kmeans()
        core = unwrap(self.model)
        core.eval()
        correct = total = 0
        counts = torch.zeros(self.config.clusters, dtype=torch.long)
        with numpy_global_seed(self.config.seed):  # the same masks every epoch
            for wav in self.eval_wavs:
                x = torch.as_tensor(wav, dtype=torch.float32, device=self.info.device)[None]
                y = self.labels(wav)[None].to(self.info.device)
                out = core(x, target_list=[y], padding_mask=torch.zeros_like(x, dtype=torch.bool), mask=True)
                logits = core.get_logits(out, True)[0]
                correct += int((logits.argmax(1) == 0).sum())
                total += int(logits.shape[0])
                counts += torch.bincount(y[0].cpu(), minlength=self.config.clusters)
        self.chance = {"chance_uniform": 1.0 / self.config.clusters, "chance_majority": float(counts.max()) / max(int(counts.sum()), 1)}
        return {"masked_acc": correct / max(total, 1), **self.chance}

    def extra_summary(self) -> dict[str, Any]:
        return {"extra_clusters": self.config.clusters, "extra_targets": self.config.targets}

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"model": unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
                "centroids": self.centroids if self.centroids is not None else torch.empty(0)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["centroids"].numel():
            self.centroids = state["centroids"]

    def export(self, url: str, meta: dict[str, Any]) -> dict[str, str]:
        from layerlab.models.formats import s3prl_hubert

        s3prl_hubert.write(url, self.task_cfg, self.model_cfg, unwrap(self.model).state_dict(), self.symbols,
                           {**meta, "clusters": self.config.clusters, "targets": self.config.targets})
        return {"checkpoint": url, "model_spec": f"s3prl:hubert_local:{url}"}

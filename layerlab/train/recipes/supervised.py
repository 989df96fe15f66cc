"""Supervised ECAPA-TDNN with AAM-softmax (margin 0.2, scale 30), as speechbrain's VoxCeleb recipe."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from layerlab.train.config import SupervisedConfig
from layerlab.train.data import crop_length
from layerlab.train.ecapa import EcapaBackbone
from layerlab.train.recipes.base import Recipe, WorkerInfo, prepare, unwrap
from layerlab.train.recipes.speaker import (
    CropSource,
    backbone_eer,
    eval_trials,
    export_ecapa,
    training_set,
)


class AAMSoftmax(torch.nn.Module):
    """Additive angular margin softmax logits: s * cos(theta + m) for the true class, s * cos(theta) otherwise."""

    def __init__(self, embed_dim: int, classes: int, margin: float, scale: float):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(classes, embed_dim))
        torch.nn.init.xavier_uniform_(self.weight)
        self.margin, self.scale = margin, scale

    def forward(self, emb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cos = F.linear(F.normalize(emb), F.normalize(self.weight)).clamp(-1 + 1e-7, 1 - 1e-7)
        sin = torch.sqrt(1.0 - cos * cos)
        cos_m = cos * math.cos(self.margin) - sin * math.sin(self.margin)  # cos(theta + m)
        # past theta = pi - m, cos(theta + m) stops decreasing; use the linear fallback there
        cos_m = torch.where(cos > math.cos(math.pi - self.margin), cos_m, cos - math.sin(math.pi - self.margin) * self.margin)
        onehot = F.one_hot(target, cos.shape[1]).to(cos.dtype)
        return self.scale * (onehot * cos_m + (1 - onehot) * cos)


class SpeakerClassifier(torch.nn.Module):
    """Backbone + AAM head in one module, so one (DDP-wrapped) forward yields the logits."""

    def __init__(self, backbone: EcapaBackbone, head: AAMSoftmax):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, wavs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(wavs), target)


class SupervisedRecipe(Recipe):
    """Speaker classification over the training speakers; evaluated by EER on held-out speakers."""

    name = "supervised"
    primary_metric = "eer"
    higher_is_better = False

    def __init__(self, config: SupervisedConfig, info: WorkerInfo):
        super().__init__(config, info)
        self.config: SupervisedConfig = config
        ts = training_set(config, info, config.crop_seconds[0])
        classes = ts.speaker_classes
        if classes == [""]:
            raise ValueError(f"{info.data}: no speaker labels (the speaker column is empty); the supervised recipe needs them (use dino for unlabelled audio)")
        if len(classes) < 2:
            raise ValueError(f"{info.data}: {len(classes)} training speaker(s); speaker classification needs at least 2")
        if "" in classes:
            raise ValueError(f"{info.data}: {ts.speakers.count('')} training utterances have no speaker label")
        self.training = ts
        self.classes = classes
        self.class_index = {s: i for i, s in enumerate(classes)}
        torch.manual_seed(config.seed)
        self.backbone = EcapaBackbone(config.model.kwargs())
        self.head = AAMSoftmax(self.backbone.embed_dim, len(classes), config.margin, config.scale)
        self.net = prepare(SpeakerClassifier(self.backbone, self.head), info)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.source = CropSource(config, info, ts, config.augment)
        self.trials = eval_trials(config, info)

    def margin_at(self, step: int) -> float:
        """The AAM margin at ``step``: 0 before the warm-up window, ramping linearly to ``margin`` across it."""
        start, end = (f * self.total_steps for f in self.config.margin_warmup)
        if end <= 0 or step >= end:
            return self.config.margin
        if step < start:
            return 0.0
        return self.config.margin * (step - start) / max(end - start, 1e-9)

    def train_step(self, epoch: int, step: int, rng: np.random.Generator) -> dict[str, float]:
        lr = self.set_lr(step)
        self.head.margin = self.margin_at(step)
        clips = self.source.clips()
        x = self.source.crops(clips, crop_length(self.config.crop_seconds, rng), rng)
        y = torch.tensor([self.class_index[c.speaker] for c in clips], device=self.info.device)
        self.net.train()
        logits = self.net(x, y)
        loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.clip(self.net.parameters())
        self.optimizer.step()
        acc = float((logits.argmax(1) == y).float().mean())
        return {"loss": float(loss.detach()), "train_acc": acc, "lr": lr, "margin": self.head.margin}

    def evaluate(self, epoch: int) -> dict[str, float]:
        return backbone_eer(self.backbone, self.trials, self.info.device)

    def state_dict(self) -> dict[str, Any]:
        return {"net": unwrap(self.net).state_dict(), "optimizer": self.optimizer.state_dict(), "classes": self.classes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("classes") != self.classes:
            raise ValueError("checkpoint was trained on other speakers than this corpus's training speakers")
        unwrap(self.net).load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])

    def export(self, url: str, meta: dict[str, Any]) -> dict[str, str]:
        return export_ecapa(self.backbone, url, meta)

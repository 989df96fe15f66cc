"""What every recipe offers the shared training loop, and the pieces they share (lr schedule, clipping)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from layerlab.train.config import TrainConfig
from layerlab.train.data import TrainingSet


@dataclass
class WorkerInfo:
    """Where a recipe runs: its DDP rank, the world size, the torch device, the corpus URL, the output URL."""

    rank: int
    world: int
    device: torch.device
    data: str
    out: str


class Recipe:
    """Base class: a recipe builds its models from a config and trains one step at a time.

    Subclasses set ``name``, ``primary_metric`` (with ``higher_is_better``) and implement
    ``train_step``, ``evaluate``, ``state_dict``/``load_state_dict`` and ``export``.
    """

    name = "base"
    primary_metric = "loss"
    higher_is_better = False

    def __init__(self, config: TrainConfig, info: WorkerInfo):
        self.config = config
        self.info = info
        self.training: TrainingSet | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.base_lr = config.lr

    # -- schedule ---------------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        """Configured, else one pass over the training utterances with the global batch."""
        if self.config.steps_per_epoch:
            return self.config.steps_per_epoch
        assert self.training is not None
        return max(1, len(self.training.ids) // (self.config.batch_size * self.info.world))

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.epochs

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to ``lr * min_lr_ratio`` at the last step."""
        c = self.config
        if step < c.warmup_steps:
            return self.base_lr * (step + 1) / c.warmup_steps
        span = max(1, self.total_steps - c.warmup_steps)
        t = min(1.0, (step - c.warmup_steps) / span)
        low = self.base_lr * c.min_lr_ratio
        return low + 0.5 * (self.base_lr - low) * (1 + math.cos(math.pi * t))

    def set_lr(self, step: int) -> float:
        lr = self.lr_at(step)
        assert self.optimizer is not None
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def clip(self, params: Any) -> None:
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)

    # -- interface ----------------------------------------------------------------------------
    def summary_counts(self) -> dict[str, int]:
        """Data counts for the summary (training utterances, skipped/padded short audio...)."""
        return dict(self.training.counts) if self.training else {}

    def summary_speakers(self) -> dict[str, Any]:
        """``training_speakers`` and ``excluded_speakers`` (reason -> speakers) for summary.json: the leakage record."""
        return self.training.speaker_record() if self.training else {}

    def train_step(self, epoch: int, step: int, rng: np.random.Generator) -> dict[str, float]:
        raise NotImplementedError

    def evaluate(self, epoch: int) -> dict[str, float]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def export(self, url: str, meta: dict[str, Any]) -> dict[str, str]:
        """Write the trained model through a format writer; returns {"checkpoint", "model_spec"}."""
        raise NotImplementedError


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside a DDP wrapper (or the module itself)."""
    return module.module if hasattr(module, "module") else module


def prepare(module: torch.nn.Module, info: WorkerInfo, find_unused_parameters: bool = False) -> torch.nn.Module:
    """Move to the worker's device; wrap in DDP when there is more than one worker (layer drop needs
    ``find_unused_parameters``: a dropped layer gets no gradient in that step)."""
    module = module.to(info.device)
    if info.world > 1:
        from ray.train.torch import prepare_model

        return prepare_model(module, move_to_device=False,
                             parallel_strategy_kwargs={"find_unused_parameters": find_unused_parameters})
    return module

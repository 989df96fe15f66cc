"""The probe training loop: plain PyTorch on CPU or GPU, dev-set early stopping, best-dev state, resumable state.

The loop never loads or runs a model: batches come from the bound task (pooled matrices in memory or
frames streamed from the cache). ``report`` (Ray Tune's, or none) is called after an epoch with the
dev metric and the full training state to checkpoint, at most every ``report_interval_s`` seconds
and always after the last epoch (Tune's per-report overhead would otherwise dominate fast probes).

Schedule: Adam at the trial's ``lr`` (times ``pooled_lr_factor`` on the pooled tier; the weighted
sum's softmax logits at ``layer_weights_lr_factor`` times that, no weight decay); with
``lr_schedule: plateau`` the rate halves after every ``patience // 3`` epochs without a dev
improvement (never below ``lr * min_lr_factor``), so a probe settles before patience runs out.
``max_epochs``/``patience`` default per tier (:meth:`ProbeConfig.epochs_for`). The result records
why training stopped (``patience`` or ``max_epochs``): a probe that hit the cap did not converge.
Patience counts epochs in which neither the dev metric nor the task's dev loss (``Evaluation.extra
["loss"]``, where it reports one) improved (the loss by more than ``loss_tie_min_delta`` nats per
utterance): a CTC probe sits near 100 % PER (blanks) for many epochs while its loss falls, and on a dev
split of a dozen utterances accuracy moves in big discrete steps. The state kept is the best dev
*metric*; a tie goes to the epoch with the lower dev loss.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from layerlab.probe.config import ProbeConfig
from layerlab.runtime import pick_device
from layerlab.probe.evaluation import Evaluation
from layerlab.probe.tasks.base import BoundTask


@dataclass
class FitResult:
    """Outcome of one training run: the best-dev model state and metric, epochs run, per-epoch history."""

    best_state: dict[str, torch.Tensor]
    best_dev: float
    best_epoch: int
    epochs: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    stopped_by: str = "max_epochs"
    max_epochs: int = 0
    final_lr: float = 0.0

    def convergence(self) -> dict[str, Any]:
        """The summary.json record of this fit (CONTRACTS §4)."""
        return {"stopped_by": self.stopped_by, "epochs": self.epochs, "best_epoch": self.best_epoch, "max_epochs": self.max_epochs}


def _better(a: float, b: float | None, higher: bool) -> bool:
    return b is None or (a > b if higher else a < b)


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def param_groups(model: torch.nn.Module, lr: float, weights_factor: float) -> list[dict[str, Any]]:
    """Adam groups: the featurizer's softmax logits at ``lr * weights_factor``, everything else at ``lr``.

    The logits are scale-free O(1) parameters: at a head's learning rate (1e-3) moving one weight from
    1/L to most of the sum takes thousands of steps, more than a small probe ever runs.
    """
    weights = [p for n, p in model.named_parameters() if n.endswith("featurizer.weights")]
    rest = [p for n, p in model.named_parameters() if not n.endswith("featurizer.weights")]
    groups = [{"params": rest, "lr": lr, "lr_factor": 1.0}]
    if weights:
        groups.append({"params": weights, "lr": lr * weights_factor, "lr_factor": weights_factor, "weight_decay": 0.0})
    return groups


def fit(task: BoundTask, hp: dict[str, Any], cfg: ProbeConfig, *, seed: int = 0,
        report: Callable[[dict[str, float], dict[str, Any] | None], None] | None = None,
        resume: dict[str, Any] | None = None, max_epochs: int | None = None) -> FitResult:
    """Train ``task``'s probe with hyperparameters ``hp`` (lr, weight_decay, hidden); early-stop on dev."""
    device = pick_device(cfg.device)
    model = task.build(hp, seed).to(device)
    tier = str(getattr(task, "tier", "frames"))
    lr = float(hp.get("lr", cfg.lr)) * (cfg.pooled_lr_factor if tier == "pooled" else 1.0)
    opt = torch.optim.Adam(param_groups(model, lr, cfg.layer_weights_lr_factor), lr=lr, weight_decay=float(hp.get("weight_decay", cfg.weight_decay)))
    state: dict[str, Any] = {"epoch": 0, "best": None, "best_epoch": -1, "bad": 0, "history": [], "best_state": None, "steps": 0, "lr": lr,
                             "best_loss": float("inf"), "lowest_loss": float("inf")}
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        state = {k: resume.get(k, state[k]) for k in state}
    start = last_report = time.perf_counter()
    limit, patience = cfg.epochs_for(tier)
    limit = max_epochs or limit
    patience = min(patience, limit)
    cut_every = max(1, patience // 3)
    while state["epoch"] < limit and state["bad"] < patience:
        epoch = state["epoch"]
        model.train()
        total, count = 0.0, 0
        for batch in task.train_batches(epoch, seed):
            loss = task.loss(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"probe {task.info.get('task', '')}: non-finite loss at epoch {epoch} (lr {lr:g}); lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            total += float(loss.detach())
            count += 1
            state["steps"] += 1
        dev = task.evaluate(model, "dev")
        value = dev.metrics[task.primary]
        loss = float(dev.extra.get("loss", float("nan")))
        lower_loss = loss == loss and loss < state["lowest_loss"] - cfg.loss_tie_min_delta
        improved = _better(value, state["best"], task.higher_is_better) or (
            value == state["best"] and loss == loss and loss < state["best_loss"] - cfg.loss_tie_min_delta)
        if lower_loss:
            state["lowest_loss"] = loss
        if improved:
            state.update(best=value, best_epoch=epoch, best_state=_cpu_state(model), best_loss=loss)
        if improved or lower_loss:
            state["bad"] = 0
        else:
            state["bad"] += 1
            if cfg.lr_schedule == "plateau" and state["bad"] % cut_every == 0:
                state["lr"] = max(state["lr"] * 0.5, lr * cfg.min_lr_factor)
                for group in opt.param_groups:
                    group["lr"] = state["lr"] * group.get("lr_factor", 1.0)
        state["epoch"] = epoch + 1
        row = {"epoch": epoch + 1, "train_loss": total / max(count, 1), f"dev_{task.primary}": value, "dev_loss": loss, "best_dev": state["best"],
               "best_epoch": int(state["best_epoch"]) + 1, "lr": state["lr"]}
        state["history"].append(row)
        done = state["epoch"] >= limit or state["bad"] >= patience
        if report is not None and (done or time.perf_counter() - last_report >= cfg.report_interval_s):
            snap = {"model": _cpu_state(model), "optimizer": copy.deepcopy(opt.state_dict()), **{k: state[k] for k in state}}
            report({"dev_metric": value, "best_dev": float(state["best"]), "epoch": epoch + 1, "train_loss": row["train_loss"],
                    "best_epoch": int(state["best_epoch"]) + 1, "max_epochs": int(limit), "stopped_by_patience": int(state["bad"] >= patience),
                    "lr": float(state["lr"])}, snap)
            last_report = time.perf_counter()
    if state["best_state"] is None:
        state["best_state"] = _cpu_state(model)
    return FitResult(state["best_state"], float(state["best"]) if state["best"] is not None else float("nan"), int(state["best_epoch"]) + 1,
                     int(state["epoch"]), state["history"], time.perf_counter() - start, int(state["steps"]),
                     stopped_by="patience" if state["bad"] >= patience else "max_epochs", max_epochs=int(limit), final_lr=float(state["lr"]))


def evaluate_state(task: BoundTask, hp: dict[str, Any], state: dict[str, torch.Tensor], split: str, cfg: ProbeConfig) -> tuple[torch.nn.Module, Evaluation]:
    """Rebuild the probe, load a (best-dev) state and evaluate it on ``split``."""
    model = task.build(hp, 0)
    model.load_state_dict(state)
    model.to(pick_device(cfg.device))
    return model, task.evaluate(model, split)

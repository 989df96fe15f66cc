"""DINO speaker SSL on ECAPA-TDNN (wespeaker / 3D-Speaker recipe). Speaker labels are never read.

Student sees 2 global + 4 local crops of each utterance (each crop augmented independently), the
teacher (an EMA of the student) sees the global crops; loss = cross-entropy between the teacher's
centred, sharpened softmax and the student's softmax over all pairs of different views. Teacher
temperature warms up 0.04 -> 0.07, centre momentum 0.9, EMA momentum 0.996 -> 1 (cosine),
SGD lr 0.2 x global batch / 256 (AdamW optional) with weight decay on weights only, gradient clip 3, the head's last
layer frozen during the first epoch. Evaluation and the exported checkpoint use the teacher.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from layerlab.train.config import DinoConfig, DinoHeadConfig
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


class DinoHead(torch.nn.Module):
    """MLP (Linear-BN-GELU) -> bottleneck -> L2 normalise -> weight-normalised linear with unit norm (g = 1)."""

    def __init__(self, in_dim: int, cfg: DinoHeadConfig):
        super().__init__()
        layers: list[torch.nn.Module] = []
        dim = in_dim
        for _ in range(max(cfg.layers - 1, 0)):
            layers += [torch.nn.Linear(dim, cfg.hidden_dim)]
            if cfg.use_bn:
                layers.append(torch.nn.BatchNorm1d(cfg.hidden_dim))
            layers.append(torch.nn.GELU())
            dim = cfg.hidden_dim
        layers.append(torch.nn.Linear(dim, cfg.bottleneck_dim))
        self.mlp = torch.nn.Sequential(*layers)
        for m in self.mlp.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.trunc_normal_(m.weight, std=0.02)
                torch.nn.init.zeros_(m.bias)
        # the last layer's direction vectors; the weight norm's gain is fixed at 1 (DINO's norm_last_layer)
        self.last_layer = torch.nn.Parameter(torch.empty(cfg.out_dim, cfg.bottleneck_dim))
        torch.nn.init.trunc_normal_(self.last_layer, std=0.02)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.mlp(emb), dim=-1)
        return F.linear(z, F.normalize(self.last_layer, dim=1))


class DinoNet(torch.nn.Module):
    """ECAPA backbone + DINO head; ``forward(list of [B, S_v] crops)`` -> logits of every view, concatenated."""

    def __init__(self, backbone: EcapaBackbone, head: DinoHead):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, views: list[torch.Tensor], with_embeddings: bool = False) -> Any:
        emb = [self.backbone(v) for v in views]
        logits = torch.cat([self.head(e) for e in emb])
        return (logits, emb) if with_embeddings else logits


def variance_covariance_loss(emb: torch.Tensor, std_coeff: float = 10.0, cov_coeff: float = 1.0) -> torch.Tensor:
    """RDINO's regulariser (3D-Speaker ``RegLoss``, VICReg's terms) on a batch of embeddings [B, D]: a hinge
    keeping every dimension's std >= 1 plus the squared off-diagonal covariances / D; it fights the
    partial collapse of DINO's outputs onto a few prototypes."""
    x = emb - emb.mean(0)
    std = torch.sqrt(x.var(0) + 1e-4)
    cov = (x.T @ x) / max(x.shape[0] - 1, 1)
    off = cov - torch.diag(torch.diag(cov))
    return std_coeff * F.relu(1 - std).mean() + cov_coeff * off.pow(2).sum() / x.shape[1]


def dino_loss(student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, n_global: int, n_views: int,
              student_temp: float, teacher_temp: float) -> torch.Tensor:
    """Mean cross-entropy over (teacher global view, student view) pairs of different views."""
    s = (student / student_temp).chunk(n_views)
    t = F.softmax((teacher - center) / teacher_temp, dim=-1).detach().chunk(n_global)
    total, pairs = student.new_zeros(()), 0
    for iq, q in enumerate(t):
        for v, sv in enumerate(s):
            if v == iq:
                continue
            total = total + torch.sum(-q * F.log_softmax(sv, dim=-1), dim=-1).mean()
            pairs += 1
    return total / pairs


@torch.no_grad()
def collapse_diagnostics(student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, n_global: int,
                         teacher_temp: float) -> dict[str, float]:
    """Per-step collapse indicators (DINO's two failure modes): the teacher's per-crop entropy (near
    ln K = collapse to uniform), the entropy of its batch-mean distribution (near 0 = one dimension
    dominates), the centre's norm, and how often the student's global crop picks the teacher's argmax
    of the other global crop of the same utterance (chance ~ 1/K)."""
    q = F.softmax((teacher - center) / teacher_temp, dim=-1)
    entropy = float(-(q * torch.log(q.clamp_min(1e-12))).sum(-1).mean())
    mean_q = q.mean(0)
    marginal = float(-(mean_q * torch.log(mean_q.clamp_min(1e-12))).sum())
    t_arg = (teacher - center).argmax(-1).chunk(n_global)
    s_arg = student[: teacher.shape[0]].argmax(-1).chunk(n_global)
    agree = [float((s_arg[v] == t_arg[iq]).float().mean()) for iq in range(n_global) for v in range(n_global) if v != iq]
    return {"teacher_entropy": entropy, "teacher_batch_entropy": marginal, "center_norm": float(center.norm()),
            "agreement": float(np.mean(agree)) if agree else float("nan")}


class DinoRecipe(Recipe):
    """Self-distillation with no labels; evaluated by the teacher's EER on held-out speakers."""

    name = "dino"
    primary_metric = "eer"
    higher_is_better = False

    def __init__(self, config: DinoConfig, info: WorkerInfo):
        super().__init__(config, info)
        self.config: DinoConfig = config
        self.training = training_set(config, info, config.global_seconds[0])  # an utterance must hold a global crop
        torch.manual_seed(config.seed)
        backbone = EcapaBackbone(config.model.kwargs())
        student = DinoNet(backbone, DinoHead(backbone.embed_dim, config.head))
        self.teacher = copy.deepcopy(student).to(info.device)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.student = prepare(student, info)
        self.base_lr = config.lr * config.batch_size * info.world / 256.0
        decay = [p for p in self.student.parameters() if p.ndim > 1]
        no_decay = [p for p in self.student.parameters() if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if config.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(groups, lr=self.base_lr)
        else:
            self.optimizer = torch.optim.SGD(groups, lr=self.base_lr, momentum=config.momentum)
        self.center = torch.zeros(1, config.head.out_dim, device=info.device)
        self.source = CropSource(config, info, self.training, config.augment)
        self.trials = eval_trials(config, info)

    # -- schedules ----------------------------------------------------------------------------
    def teacher_temp(self, epoch: int) -> float:
        c = self.config
        warm = c.teacher_temp_warmup_ratio * c.epochs
        if warm <= 0 or epoch >= warm:
            return c.teacher_temp[1]
        return c.teacher_temp[0] + (c.teacher_temp[1] - c.teacher_temp[0]) * epoch / warm

    def teacher_momentum(self, step: int) -> float:
        m0 = self.config.teacher_momentum
        return 1.0 - (1.0 - m0) * (math.cos(math.pi * step / max(1, self.total_steps)) + 1) / 2

    def last_layer_frozen(self, epoch: int, step: int) -> bool:
        """DINO keeps the head's last layer fixed at first (stabilises the start); steps override epochs."""
        c = self.config
        if c.freeze_last_layer_steps is not None:
            return step < c.freeze_last_layer_steps
        return epoch < c.freeze_last_layer_epochs

    # -- training -----------------------------------------------------------------------------
    def train_step(self, epoch: int, step: int, rng: np.random.Generator) -> dict[str, float]:
        c = self.config
        lr = self.set_lr(step)
        clips = self.source.clips()
        g_len = crop_length(c.global_seconds, rng)
        l_len = crop_length(c.local_seconds, rng)
        views = self.source.view_crops(clips, [g_len] * c.global_crops + [l_len] * c.local_crops, rng, c.disjoint_crops)
        globals_, locals_ = views[: c.global_crops], views[c.global_crops:]
        self.student.train()
        self.teacher.train()  # BN in train mode as in the reference recipes (batch statistics)
        with torch.no_grad():
            t_out = self.teacher(globals_)
        s_out, s_emb = self.student(globals_ + locals_, with_embeddings=True)
        temp = self.teacher_temp(epoch)
        loss = dino_loss(s_out, t_out, self.center, c.global_crops, c.global_crops + c.local_crops, c.student_temp, temp)
        reg = None
        if c.reg_weight > 0:  # RDINO: variance/covariance terms on the student's global-crop embeddings
            reg = torch.stack([variance_covariance_loss(e) for e in s_emb[: c.global_crops]]).mean()
            loss = loss + c.reg_weight * reg
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.clip(self.student.parameters())
        if self.last_layer_frozen(epoch, step):
            unwrap(self.student).head.last_layer.grad = None
        self.optimizer.step()
        self._update_teacher(self.teacher_momentum(step))
        diagnostics = collapse_diagnostics(s_out.detach(), t_out, self.center, c.global_crops, temp)
        self._update_center(t_out)
        if reg is not None:
            diagnostics["reg_loss"] = float(reg.detach())
        return {"loss": float(loss.detach()), "lr": lr, "teacher_temp": temp, **diagnostics}

    @torch.no_grad()
    def _update_teacher(self, m: float) -> None:
        student = unwrap(self.student)
        for ps, pt in zip(student.parameters(), self.teacher.parameters()):
            pt.mul_(m).add_(ps.detach(), alpha=1 - m)
        for bs, bt in zip(student.buffers(), self.teacher.buffers()):
            bt.copy_(bs)

    @torch.no_grad()
    def _update_center(self, t_out: torch.Tensor) -> None:
        batch_center = t_out.sum(dim=0, keepdim=True)
        count = torch.tensor([float(t_out.shape[0])], device=t_out.device)
        if self.info.world > 1:
            import torch.distributed as dist

            dist.all_reduce(batch_center)
            dist.all_reduce(count)
        m = self.config.center_momentum
        self.center.mul_(m).add_(batch_center / count, alpha=1 - m)

    def evaluate(self, epoch: int) -> dict[str, float]:
        return backbone_eer(self.teacher.backbone, self.trials, self.info.device)

    def state_dict(self) -> dict[str, Any]:
        return {"student": unwrap(self.student).state_dict(), "teacher": self.teacher.state_dict(),
                "optimizer": self.optimizer.state_dict(), "center": self.center.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unwrap(self.student).load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.center.copy_(state["center"].to(self.center.device))

    def export(self, url: str, meta: dict[str, Any]) -> dict[str, str]:
        return export_ecapa(self.teacher.backbone, url, {**meta, "network": "dino teacher"})

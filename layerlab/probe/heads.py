"""Probe heads with SUPERB's shapes: projector -> mean pooling -> linear, frame-level linear, x-vector + AM-softmax."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from layerlab.frames import masked_mean, valid_mask


class MeanPoolLinear(nn.Module):
    """``Linear(H, hidden)`` -> mean over frames -> ``Linear(hidden, C)`` (SUPERB KS/IC/SID/ER).

    The first layer is affine, so mean pooling commutes with it: :meth:`forward_pooled` on the per-utterance
    mean gives exactly :meth:`forward_frames` on the frames (up to rounding).
    """

    def __init__(self, in_dim: int, num_outputs: int, hidden: int = 256) -> None:
        super().__init__()
        self.projector = nn.Linear(in_dim, hidden)
        self.out = nn.Linear(hidden, num_outputs)

    def forward_pooled(self, mean: torch.Tensor) -> torch.Tensor:
        """Logits from per-utterance feature means ``[B, H]``."""
        return self.out(self.projector(mean))

    def forward_frames(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits from padded frames ``[B, T, H]`` with valid ``lengths``."""
        return self.out(masked_mean(self.projector(frames), lengths))


class FrameLinear(nn.Module):
    """``Linear(H, hidden)`` projector -> frame-wise ``Linear(hidden, C)`` (SUPERB PR with CTC)."""

    def __init__(self, in_dim: int, num_outputs: int, hidden: int = 256) -> None:
        super().__init__()
        self.projector = nn.Linear(in_dim, hidden)
        self.out = nn.Linear(hidden, num_outputs)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, T, H]`` -> per-frame logits ``[B, T, C]``."""
        return self.out(self.projector(frames))


class XVector(nn.Module):
    """SUPERB's ASV head: ``Linear(H, proj)`` -> 5 TDNN layers (no BN) -> mean+std pooling -> 2 linear -> embedding."""

    def __init__(self, in_dim: int, proj: int = 512, tdnn: int = 512, agg: int = 1500, embed: int = 512) -> None:
        super().__init__()
        self.projector = nn.Linear(in_dim, proj)
        spec = [(proj, tdnn, 5, 1), (tdnn, tdnn, 3, 2), (tdnn, tdnn, 3, 3), (tdnn, tdnn, 1, 1), (tdnn, agg, 1, 1)]
        self.tdnn = nn.ModuleList(nn.Conv1d(i, o, k, dilation=d, padding=d * (k - 1) // 2) for i, o, k, d in spec)
        self.fc1 = nn.Linear(2 * agg, embed)
        self.fc2 = nn.Linear(embed, embed)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Padded ``[B, T, H]`` -> utterance embeddings ``[B, embed]`` (statistics over valid frames only).

        Padded frames are zeroed after every layer, so a valid frame near the end sees the same zeros a lone,
        unpadded utterance gets from the convolutions' own padding: batching does not change embeddings.
        """
        valid = valid_mask(lengths.to(frames.device), frames.shape[1]).to(frames.dtype)
        x = (self.projector(frames) * valid[..., None]).transpose(1, 2)
        for conv in self.tdnn:
            x = F.relu(conv(x)) * valid[:, None, :]  # 'same' padding keeps T, so valid frames stay the first `lengths`
        x = x.transpose(1, 2)
        mean = masked_mean(x, lengths)
        var = masked_mean((x - mean[:, None]) ** 2, lengths)
        stats = torch.cat([mean, var.clamp(min=1e-8).sqrt()], dim=1)
        return self.fc2(F.relu(self.fc1(stats)))


class AMSoftmax(nn.Module):
    """Additive-margin softmax loss: ``s * (cos(theta_y) - m)`` on the target class (s=30, m=0.4 in SUPERB)."""

    def __init__(self, embed: int, num_classes: int, scale: float = 30.0, margin: float = 0.4) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embed))
        nn.init.xavier_normal_(self.weight)
        self.scale, self.margin = float(scale), float(margin)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each embedding to each class weight ``[B, C]``."""
        return F.normalize(embeddings, dim=1) @ F.normalize(self.weight, dim=1).T

    def forward(self, embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean AM-softmax loss of ``embeddings`` [B, E] with class ``targets`` [B]."""
        cos = self.cosine(embeddings)
        margin = F.one_hot(targets, cos.shape[1]).to(cos.dtype) * self.margin
        return F.cross_entropy(self.scale * (cos - margin), targets)

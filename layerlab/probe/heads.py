"""Probe heads with SUPERB's shapes: projector -> mean pooling -> linear, frame-level linear, x-vector + AM-softmax, BLSTM CTC."""

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


#: (kernel, dilation) of s3prl's five x-vector TDNN layers (``downstream/sv_voxceleb1/model.py`` ``XVector``)
TDNN_CONTEXT = ((5, 1), (3, 2), (3, 3), (1, 1), (1, 1))
#: frames the unpadded TDNN stack consumes: an utterance of T frames gives T - 14 TDNN frames
TDNN_SHRINK = sum(d * (k - 1) for k, d in TDNN_CONTEXT)


class XVector(nn.Module):
    """SUPERB's ASV head (s3prl ``sv_voxceleb1``): connector ``Linear(H, proj)`` -> 5 unpadded TDNN layers (ReLU,
    no BN, no dropout) -> mean+std pooling -> ``linear1`` + ReLU (the embedding) -> ``linear2`` + ReLU (training only).

    As in s3prl, the AM-softmax loss is trained on ``train_output`` (``UtteranceExtractor.forward``) and
    trials are scored on ``forward`` (``UtteranceExtractor.inference``: ``linear1`` + ReLU). The TDNN has no
    padding, so a valid output frame only reads valid input frames and padding never reaches an embedding.
    Utterances shorter than the TDNN's 15-frame context (s3prl drops them; here: utterance-level layers, one
    frame) are extended by repeating their last frame, per utterance, so batching never changes them.
    """

    def __init__(self, in_dim: int, proj: int = 512, tdnn: int = 512, agg: int = 1500, embed: int = 512) -> None:
        super().__init__()
        self.projector = nn.Linear(in_dim, proj)
        widths = [proj] + [tdnn] * (len(TDNN_CONTEXT) - 1) + [agg]
        self.tdnn = nn.ModuleList(nn.Conv1d(widths[i], widths[i + 1], k, dilation=d) for i, (k, d) in enumerate(TDNN_CONTEXT))
        self.linear1 = nn.Linear(2 * agg, embed)
        self.linear2 = nn.Linear(embed, embed)

    def statistics(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Padded ``[B, T, H]`` -> mean and (unbiased) std of the TDNN output over each utterance's valid frames."""
        lengths = lengths.to(frames.device)
        need = TDNN_SHRINK + 1
        if frames.shape[1] < need or bool((lengths < need).any()):
            frames = _extend_short(frames, lengths, need)
            lengths = lengths.clamp(min=need)
        x = self.projector(frames).transpose(1, 2)
        for conv in self.tdnn:
            x = F.relu(conv(x))
        x = x.transpose(1, 2)
        valid = lengths - TDNN_SHRINK
        mean = masked_mean(x, valid)
        mask = valid_mask(valid, x.shape[1]).to(x.dtype)[..., None]
        var = (((x - mean[:, None]) ** 2) * mask).sum(1) / (valid - 1).clamp(min=1).to(x.dtype)[:, None]
        positive = var > 0  # a constant channel has std 0 (as torch.std), with a zero gradient instead of sqrt'(0) = inf
        std = torch.where(positive, torch.where(positive, var, torch.ones_like(var)).sqrt(), torch.zeros_like(var))
        return torch.cat([mean, std], dim=1)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Utterance embeddings ``[B, embed]`` scored in trials: ``relu(linear1(stats))``."""
        return F.relu(self.linear1(self.statistics(frames, lengths)))

    def train_output(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """What the AM-softmax loss sees while training: ``relu(linear2(embedding))``."""
        return F.relu(self.linear2(self.forward(frames, lengths)))


def _extend_short(frames: torch.Tensor, lengths: torch.Tensor, need: int) -> torch.Tensor:
    """Utterances shorter than ``need`` frames get their last valid frame repeated up to ``need`` (longer ones unchanged)."""
    width = max(int(frames.shape[1]), need)
    if frames.shape[1] < width:
        frames = F.pad(frames, (0, 0, 0, width - frames.shape[1]))
    t = torch.arange(width, device=frames.device)[None, :]
    short = (lengths < need)[:, None]
    index = torch.where(short, torch.minimum(t, (lengths - 1).clamp(min=0)[:, None]), t)
    return torch.gather(frames, 1, index[..., None].expand(-1, -1, frames.shape[2]))


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


class BLSTMCTC(nn.Module):
    """SUPERB's ASR head (s3prl ``downstream/asr`` ``RNNs``): ``Linear(H, project)`` -> ``layers`` bidirectional LSTMs
    of ``hidden`` units per direction (dropout after each) -> ``Linear(2 * hidden, C)`` per-frame CTC logits.

    SUPERB: project 1024, 2 layers of 1024, dropout 0.2, no layer norm, no per-layer projection, no downsampling.
    Sequences are packed, so padding never reaches the backward direction of a valid frame.
    """

    def __init__(self, in_dim: int, num_outputs: int, project: int = 1024, hidden: int = 1024, layers: int = 2,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.projector = nn.Linear(in_dim, project)
        sizes = [project] + [2 * hidden] * (layers - 1)
        self.rnns = nn.ModuleList(nn.LSTM(s, hidden, num_layers=1, bidirectional=True, batch_first=True) for s in sizes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out = nn.Linear(2 * hidden, num_outputs)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Padded ``[B, T, H]`` with valid ``lengths`` -> per-frame logits ``[B, T, C]`` (padded frames: zeros in, junk out)."""
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        x = self.projector(frames)
        total = x.shape[1]
        cpu_lengths = lengths.detach().cpu().clamp(min=1)
        for rnn in self.rnns:
            packed = pack_padded_sequence(x, cpu_lengths, batch_first=True, enforce_sorted=False)
            x, _ = pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=total)
            x = self.dropout(x)
        return self.out(x)

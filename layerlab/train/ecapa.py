"""The ECAPA-TDNN backbone both speaker recipes train: speechbrain Fbank (80 mels), sentence mean
normalisation and ``ECAPA_TDNN``, exactly the modules the ``ckpt:`` loader rebuilds."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from layerlab.models.ecapa_adapter import build_ecapa


class EcapaBackbone(torch.nn.Module):
    """waveform crops [B, S] -> speaker embeddings [B, lin_neurons]."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = dict(config)
        self.compute_features, self.mean_var_norm, self.embedding_model = build_ecapa(self.config)

    @property
    def embed_dim(self) -> int:
        """Embedding size (lin_neurons)."""
        return int(self.embedding_model.fc.conv.out_channels)

    def forward(self, wavs: torch.Tensor, rel_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings of a batch; ``rel_lengths`` are speechbrain's relative lengths (None: all full)."""
        if rel_lengths is None:
            rel_lengths = torch.ones(wavs.shape[0], device=wavs.device)
        with torch.autocast(wavs.device.type, enabled=False):
            feats = self.compute_features(wavs)
        feats = self.mean_var_norm(feats, rel_lengths)
        return self.embedding_model(feats, rel_lengths).squeeze(1)

    def export_state(self) -> dict[str, torch.Tensor]:
        """The ECAPA_TDNN state_dict the layerlab-ecapa-v1 checkpoint stores."""
        return {k: v.detach().cpu() for k, v in self.embedding_model.state_dict().items()}


@torch.no_grad()
def embed_all(backbone: EcapaBackbone, wavs: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """Embeddings [N, D] of whole utterances, one at a time in eval mode (exact, no padding)."""
    was_training = backbone.training
    backbone.eval()
    try:
        out = [backbone(torch.as_tensor(w, dtype=torch.float32, device=device)[None]).squeeze(0).cpu() for w in wavs]
    finally:
        backbone.train(was_training)
    return torch.stack(out)

"""The ECAPA-TDNN backbone both speaker recipes train: speechbrain Fbank (80 mels), sentence mean
normalisation and ``ECAPA_TDNN``, exactly the modules the ``ckpt:`` loader rebuilds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
def embed_all(backbone: EcapaBackbone, wavs: Sequence[np.ndarray], device: torch.device, batch_size: int = 16) -> torch.Tensor:
    """Embeddings [N, D] of whole utterances in eval mode, batched by similar length (relative lengths,
    as speechbrain's ``encode_batch``; batching is ~4x cheaper on CPU than one utterance at a time)."""
    from layerlab.models.batching import length_buckets, pad_batch

    was_training = backbone.training
    backbone.eval()
    out: list[torch.Tensor | None] = [None] * len(wavs)
    try:
        for idx in length_buckets([len(w) for w in wavs], max_batch_size=batch_size, max_ratio=1.25):
            x, lengths = pad_batch([wavs[i] for i in idx])
            emb = backbone(x.to(device), (lengths.to(torch.float32) / x.shape[1]).to(device)).cpu()
            for j, i in enumerate(idx):
                out[i] = emb[j]
    finally:
        backbone.train(was_training)
    return torch.stack(out)  # type: ignore[arg-type]

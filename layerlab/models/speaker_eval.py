"""Speaker-separation check for a model's utterance embedding: same/different-speaker cosine and EER.

Used by the GE2E real-data test and ``benchmarks/ge2e_speakers.py``; all pairs of utterances are trials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from layerlab.metrics import eer
from layerlab.models.base import LayeredModel
from layerlab.models.batching import iter_layer_outputs


@dataclass(frozen=True)
class VerificationResult:
    """Trial counts, mean cosine of same/different-speaker pairs, and the equal error rate."""

    n_same: int
    n_diff: int
    mean_same: float
    mean_diff: float
    eer: float


def utterance_vectors(model: LayeredModel, wavs: Sequence[np.ndarray], batch_size: int = 8) -> dict[str, torch.Tensor]:
    """{layer: [N, D]} in one pass: utterance-level layers as is, frame layers mean-pooled over valid frames."""
    per_layer: list[list[torch.Tensor]] = [[] for _ in model.layer_names]
    order: list[int] = []
    for i, layers in iter_layer_outputs(model, wavs, mode="bucketed", batch_size=batch_size):
        order.append(i)
        for k, frames in enumerate(layers):
            per_layer[k].append(frames.mean(dim=0))
    inverse = np.argsort(order)
    return {name: torch.stack(vecs)[torch.from_numpy(inverse)] for name, vecs in zip(model.layer_names, per_layer)}


def embed_utterances(model: LayeredModel, wavs: Sequence[np.ndarray], layer: str = "embedding", batch_size: int = 8) -> torch.Tensor:
    """[N, D] vectors of one layer (see ``utterance_vectors``)."""
    if layer not in model.layer_names:
        raise ValueError(f"{model.spec}: no layer {layer!r}; layers are {model.layer_names}")
    return utterance_vectors(model, wavs, batch_size)[layer]


def partial_embeddings(model: LayeredModel, wav: np.ndarray, window: int = 25600, step: int = 12320) -> torch.Tensor:
    """Resemblyzer-style utterance vector: L2-normalised mean of embeddings of 1.6 s windows every 0.77 s."""
    starts = list(range(0, max(len(wav) - window, 0) + 1, step))
    pieces = [wav[s : s + window] for s in starts]
    vecs = utterance_vectors(model, pieces, batch_size=16)["embedding"]
    return torch.nn.functional.normalize(vecs.mean(dim=0), dim=0)


def verification_scores(embeddings: torch.Tensor, speakers: Sequence[str]) -> VerificationResult:
    """Cosine scores of all utterance pairs, split by same/different speaker, with the EER."""
    emb = torch.nn.functional.normalize(embeddings.double(), dim=1)
    cos = (emb @ emb.T).numpy()
    spk = np.asarray(speakers)
    iu = np.triu_indices(len(spk), k=1)
    same = spk[iu[0]] == spk[iu[1]]
    scores = cos[iu]
    pos, neg = scores[same], scores[~same]
    return VerificationResult(int(same.sum()), int((~same).sum()), float(pos.mean()), float(neg.mean()), eer(scores, same.astype(int)))

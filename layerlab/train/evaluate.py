"""Per-epoch speaker evaluation: cosine-scored EER on the corpus's held-out ASV trials."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from layerlab.metrics import eer


@dataclass
class Trials:
    """A trial list resolved to utterance indices, with the decoded utterances."""

    ids: list[str]
    wavs: list[np.ndarray]
    enrol: np.ndarray
    test: np.ndarray
    labels: np.ndarray


def load_trials(data: str, max_utterances: int | None = None, seed: int = 0) -> Trials | None:
    """The ``asv_trials`` table of ``data`` with its utterances decoded; None when the corpus has none."""
    from layerlab.data.manifest import read_manifest
    from layerlab.data.shards import read_table
    from layerlab.train.data import load_utterances

    if "asv_trials" not in read_manifest(data).tables:
        return None
    table = read_table(data, "asv_trials")
    enrol, test = table.column("enrol").to_pylist(), table.column("test").to_pylist()
    labels = np.asarray(table.column("label").to_pylist(), dtype=np.int64)
    ids = sorted(set(enrol) | set(test))
    if max_utterances is not None and len(ids) > max_utterances:
        keep = set(np.random.default_rng(seed).choice(ids, size=max_utterances, replace=False).tolist())
        mask = np.array([e in keep and t in keep for e, t in zip(enrol, test)])
        enrol = [e for e, m in zip(enrol, mask) if m]
        test = [t for t, m in zip(test, mask) if m]
        labels = labels[mask]
        ids = sorted(keep)
    if len(set(labels.tolist())) < 2:
        raise ValueError(f"{data}: tables/asv_trials needs target and non-target trials (got labels {sorted(set(labels.tolist()))})")
    wavs = load_utterances(data, ids)
    index = {u: i for i, u in enumerate(ids)}
    return Trials(ids, [wavs[u] for u in ids], np.array([index[e] for e in enrol]), np.array([index[t] for t in test]), labels)


def cosine_eer(embeddings: torch.Tensor, trials: Trials) -> float:
    """EER (fraction) of cosine scores between enrol and test embeddings."""
    emb = torch.nn.functional.normalize(embeddings.double(), dim=1).numpy()
    scores = np.sum(emb[trials.enrol] * emb[trials.test], axis=1)
    return float(eer(scores, trials.labels))


def trial_eer(embed: Callable[[Sequence[np.ndarray]], torch.Tensor], trials: Trials) -> float:
    """Embed every trial utterance with ``embed`` and return the cosine-scored EER."""
    return cosine_eer(embed(trials.wavs), trials)

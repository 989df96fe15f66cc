"""ASR (SUPERB ``downstream/asr``): weighted sum -> ``Linear(H, 1024)`` -> 2-layer BLSTM (1024 per direction) -> character
CTC; greedy decoding, no language model; WER (primary) and CER.

Targets are the characters of the row's transcript (contract task ``asr``, label key ``transcript``), a space
being the word boundary (s3prl's ``|``). The vocabulary is the training transcripts' characters; a character
only dev/test use cannot be produced and counts as an error (recorded in ``info``). Frames come from the frames
tier through the same streaming as PR; the CTC loss and greedy decoding are PR's (:mod:`layerlab.probe.tasks.ctc`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from layerlab.metrics import edit_distance
from layerlab.probe.config import ProbeConfig
from layerlab.probe.evaluation import Evaluation, speaker_groups
from layerlab.probe.featurizer import WeightedSum, sum_width
from layerlab.probe.heads import BLSTMCTC
from layerlab.probe.source import ProbeSource, input_error
from layerlab.probe.tasks.base import TRANSCRIPT, TaskDef, check_tier, find_spec, frames_held, labelled_rows, resolve_splits
from layerlab.probe.tasks.ctc import ctc_loss, greedy_ctc
from layerlab.probe.tasks.frames import split_batches, train_scales

BLANK = "<blank>"


def normalize_transcript(text: str) -> str:
    """Whitespace collapsed to single spaces, ends stripped (case and punctuation are the dataset's)."""
    return re.sub(r"\s+", " ", str(text)).strip()


def word_and_char_edits(ref: str, hyp: str) -> tuple[int, int, int, int]:
    """(word edits, reference words, character edits, reference characters) of one utterance."""
    return edit_distance(ref.split(), hyp.split()), len(ref.split()), edit_distance(ref, hyp), len(ref)


class RecognizerProbe(nn.Module):
    """Featurizer + SUPERB's BLSTM CTC head: per-layer padded frames and lengths -> per-frame logits ``[B, T, C]``."""

    def __init__(self, dims: list[int], num_outputs: int, cfg: ProbeConfig, scales: np.ndarray | None = None) -> None:
        super().__init__()
        a = cfg.asr
        self.featurizer = WeightedSum(dims, normalize=cfg.normalize, project_to=sum_width(dims, a.project), scales=scales)
        self.head = BLSTMCTC(self.featurizer.out_dim, num_outputs, a.project, a.hidden, a.layers, a.dropout)

    def forward(self, frames: list[torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        """Per-frame logits."""
        return self.head(self.featurizer(frames), lengths)


def transcript_rows(source: ProbeSource, task: TaskDef, spec: Any, cfg: ProbeConfig) -> tuple[pd.DataFrame, ProbeConfig]:
    """The rows with a non-empty normalised transcript (``text`` column), and the config their splits are resolved with."""
    key = spec.label_keys[0] if spec.label_keys else TRANSCRIPT
    rows = labelled_rows(source, task.name, [key])
    rows["text"] = [normalize_transcript(t) for t in rows[f"y_{key}"]]
    rows = rows.loc[rows["text"] != ""]
    if rows.empty:
        raise input_error(source.url, task.name, f"every {key!r} is empty")
    return rows, cfg


class BoundASRTask:
    """Character-CTC ASR bound to a source, speaker-disjoint splits and layers."""

    def __init__(self, source: ProbeSource, task: TaskDef, cfg: ProbeConfig, layers: list[str]) -> None:
        cfg = cfg.for_tier(reads_frames=True)  # normalize auto -> layer_norm (frames are read anyway)
        spec = find_spec(source, task)
        self.source, self.task, self.cfg, self.layers = source, task, cfg, list(layers)
        check_tier(source, task.name, "frames")
        self.rows, _ = transcript_rows(source, task, spec, cfg)
        self.splits = resolve_splits(source, task.name, spec, self.rows, cfg, strata=None, speaker_disjoint=True, frames=frames_held(source))
        chars = sorted({c for u in self.splits.ids["train"] for c in self.rows.at[u, "text"]})
        self.vocab = [BLANK] + chars
        index = {c: i for i, c in enumerate(self.vocab)}
        train = set(self.splits.ids["train"])
        self.targets = {u: [index[c] for c in self.rows.at[u, "text"]] for u in train}
        unseen = sorted({c for s in ("dev", "test") for u in self.splits.ids[s] for c in self.rows.at[u, "text"]} - set(chars))
        self.dims = [next(l.dim for l in source.layers if l.name == n) for n in self.layers]
        self.primary, self.higher_is_better = task.primary, task.higher_is_better[task.primary]
        self.scales = (train_scales(source, task.name, self.layers, self.splits.ids["train"], cfg.frames_memory_mb)
                       if cfg.normalize == "scale" else None)
        self.info: dict[str, Any] = {"tier": "frames", "normalize": cfg.normalize, "characters": len(chars), "unseen_characters": unseen,
                                     "splits": self.splits.describe()}

    def build(self, hp: dict[str, Any], seed: int) -> RecognizerProbe:
        """A fresh probe seeded with ``seed`` (sizes from ``cfg.asr``; ``hidden`` sizes the small heads of other tasks)."""
        torch.manual_seed(seed)
        return RecognizerProbe(self.dims, len(self.vocab), self.cfg, self.scales)

    def _batches(self, split: str, shuffle: bool, seed: int) -> Iterable[tuple[list[str], list[torch.Tensor], torch.Tensor]]:
        return split_batches(self.source, self.task.name, self.layers, self.splits.ids[split], self.cfg.batch_size,
                             shuffle_buffer=self.cfg.shuffle_buffer if shuffle else 0, seed=seed, hold_mb=self.cfg.frames_memory_mb)

    def train_batches(self, epoch: int, seed: int) -> Iterable[Any]:
        """Streamed, buffer-shuffled padded batches of the train split."""
        return self._batches("train", True, seed * 100003 + epoch)

    def loss(self, model: RecognizerProbe, batch: tuple) -> torch.Tensor:
        """Character CTC loss averaged over utterances."""
        ids, frames, lengths = batch
        device = next(model.parameters()).device
        return ctc_loss(model([x.to(device) for x in frames], lengths.to(device)), lengths, [self.targets[u] for u in ids])

    def transcribe(self, model: RecognizerProbe, split: str) -> dict[str, str]:
        """Greedy CTC transcript of every utterance of ``split``."""
        model.eval()
        device = next(model.parameters()).device
        out: dict[str, str] = {}
        with torch.no_grad():
            for ids, frames, lengths in self._batches(split, False, 0):
                for u, seq in zip(ids, greedy_ctc(model([x.to(device) for x in frames], lengths.to(device)), lengths)):
                    out[u] = normalize_transcript("".join(self.vocab[k] for k in seq))
        return out

    def evaluate(self, model: RecognizerProbe, split: str) -> Evaluation:
        """WER and CER (edits over reference words / characters, pooled over utterances); intervals over speakers."""
        hyps = self.transcribe(model, split)
        order = list(hyps)
        counts = np.array([word_and_char_edits(self.rows.at[u, "text"], hyps[u]) for u in order], dtype=np.float64).reshape(-1, 4)

        def metrics(idx: np.ndarray) -> dict[str, float]:
            c = counts[idx].sum(axis=0)
            return {"wer": float(c[0] / max(c[1], 1.0)), "cer": float(c[2] / max(c[3], 1.0))}

        groups, grouping = speaker_groups([str(self.rows.at[u, "speaker"]) for u in order], order)
        return Evaluation(metrics(np.ones(len(order), dtype=bool)), n=len(order), units="utterances", statistic=metrics,
                          groups=groups, grouping=grouping)

    def importance(self, model: RecognizerProbe) -> tuple[np.ndarray, np.ndarray]:
        """(softmax weights, layer shares) computed exactly as PR's (same featurizer, frames and training split)."""
        from layerlab.probe.tasks.pr import BoundPhoneTask

        return BoundPhoneTask.importance(self, model)  # type: ignore[arg-type]


def _bind(source: ProbeSource, task: TaskDef, cfg: ProbeConfig, layers: list[str]) -> BoundASRTask:
    return BoundASRTask(source, task, cfg, layers)


TASK = TaskDef(name="asr", spec_names=("asr",), tier="frames", primary="wer", higher_is_better={"wer": False, "cer": False}, bind=_bind,
               description="speech recognition: BLSTM + character CTC, greedy decoding (no LM), WER/CER", frame_targets=True,
               split_rows=transcript_rows)

__all__ = ["TASK", "BoundASRTask", "RecognizerProbe", "normalize_transcript", "word_and_char_edits"]

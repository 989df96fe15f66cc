"""CTC pieces shared by the sequence probes (PR on phones, ASR on characters): the loss and greedy decoding."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def ctc_loss(logits: torch.Tensor, lengths: torch.Tensor, targets: Sequence[Sequence[int]], reduction: str = "mean") -> torch.Tensor:
    """CTC loss of per-frame ``logits [B, T, C]`` (blank 0, infeasible alignments zeroed, as s3prl): averaged over
    utterances (``mean``), or summed (``sum``: a dev loss accumulated over batches)."""
    device = logits.device
    log_probs = F.log_softmax(logits, dim=-1).transpose(0, 1)
    flat = torch.tensor([t for seq in targets for t in seq], dtype=torch.long, device=device)
    target_lengths = torch.tensor([len(seq) for seq in targets], dtype=torch.long, device=device)
    return F.ctc_loss(log_probs, flat, lengths.to(device), target_lengths, blank=0, reduction=reduction, zero_infinity=True)


def greedy_ctc(logits: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best-path CTC decoding: argmax per frame, merge repeats, drop blanks (index 0); no language model."""
    best = logits.argmax(-1).cpu().numpy()
    out = []
    for b, n in enumerate(lengths.tolist()):
        seq, prev = [], -1
        for k in best[b, :n]:
            if k != prev and k != 0:
                seq.append(int(k))
            prev = k
        out.append(seq)
    return out

"""Token edit distance (Levenshtein) and the error rate built on it (PER for phones, WER for words)."""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np


def edit_distance(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> int:
    """Minimum number of substitutions, insertions and deletions turning ``ref`` into ``hyp``."""
    ref, hyp = list(ref), list(hyp)
    if not ref or not hyp:
        return len(ref) + len(hyp)
    # one DP row at a time; the inner minimum over substitutions/deletions is vectorised
    vocab: dict[Hashable, int] = {}
    r = np.array([vocab.setdefault(t, len(vocab)) for t in ref])
    h = np.array([vocab.setdefault(t, len(vocab)) for t in hyp])
    prev = np.arange(len(ref) + 1)
    for j, tok in enumerate(h, start=1):
        # substitution/match and deletion (from the previous row) first, insertions chain within the row
        cur = np.empty_like(prev)
        cur[0] = j
        cur[1:] = np.minimum(prev[:-1] + (r != tok), prev[1:] + 1)
        # an insertion chain cur[i] = min(cur[i], cur[i-1] + 1) is a running minimum of cur[k] - k
        cur = np.minimum.accumulate(cur - np.arange(len(cur))) + np.arange(len(cur))
        prev = cur
    return int(prev[-1])


def error_rate(refs: Sequence[Sequence[Hashable]], hyps: Sequence[Sequence[Hashable]]) -> float:
    """Total token edits over total reference tokens (PER on phone lists, WER on word lists)."""
    if len(refs) != len(hyps):
        raise ValueError(f"error_rate: {len(refs)} references but {len(hyps)} hypotheses")
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("error_rate: the references hold no tokens")
    return sum(edit_distance(r, h) for r, h in zip(refs, hyps)) / total

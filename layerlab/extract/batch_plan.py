"""Plan model calls over a window of decoded utterances: padded, length-bucketed or one at a time.

Every plan is bounded by padded audio (``batch_size * longest <= max_samples``) and by a maximum
batch size; an utterance longer than ``max_samples`` runs alone. Every index appears exactly once.
"""

from __future__ import annotations

from typing import Sequence

from layerlab.models.batching import length_buckets


def plan(lengths: Sequence[int], mode: str, max_samples: int, max_batch_size: int) -> list[list[int]]:
    """Index batches for ``mode`` in ``bucketed`` / ``padded`` / ``unbatched``."""
    if mode == "unbatched":
        return [[i] for i in range(len(lengths))]
    if mode == "bucketed":
        return length_buckets(lengths, max_batch_size=max_batch_size, max_batch_samples=max_samples)
    if mode == "padded":
        return _padded(lengths, max_samples, max_batch_size)
    raise ValueError(f"unknown extraction mode {mode!r}; choose bucketed, padded or unbatched")


def _padded(lengths: Sequence[int], max_samples: int, max_batch_size: int) -> list[list[int]]:
    """Input order; a batch closes when one more utterance would exceed a bound."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i, n in enumerate(lengths):
        grown = max(longest, int(n))
        if current and (len(current) >= max_batch_size or (len(current) + 1) * grown > max_samples):
            batches.append(current)
            current, grown = [], int(n)
        current.append(i)
        longest = grown
    if current:
        batches.append(current)
    return batches

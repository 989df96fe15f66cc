"""Batching plans: which utterances go into one model call (padded in order, length-bucketed, or one at a time).

Pure index arithmetic on lengths (no torch), shared by extraction, the model helpers and training.
Every plan bounds a batch by ``max_batch_size`` and, when given, by padded samples
(``batch size * longest <= max_batch_samples``; a longer utterance runs alone). Every index
appears exactly once.
"""

from __future__ import annotations

from typing import Literal, Sequence

Mode = Literal["padded", "batched", "bucketed", "unbatched"]
MODES: tuple[str, ...] = ("padded", "batched", "bucketed", "unbatched")


def length_buckets(
    lengths: Sequence[int], max_batch_size: int = 16, max_batch_samples: int | None = None, max_ratio: float = 1.25
) -> list[list[int]]:
    """Group indices into batches of similar length (sorted, longest first).

    A batch closes when it holds ``max_batch_size`` items, when its padded size would exceed
    ``max_batch_samples``, or when the longest item is more than ``max_ratio`` times the shortest.
    """
    if max_batch_size < 1:
        raise ValueError("length_buckets: max_batch_size must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current:
            longest = int(lengths[current[0]])
            too_many = len(current) >= max_batch_size
            too_big = max_batch_samples is not None and (len(current) + 1) * longest > max_batch_samples
            too_uneven = longest > max_ratio * max(int(lengths[i]), 1)
            if too_many or too_big or too_uneven:
                batches.append(current)
                current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def padded_batches(lengths: Sequence[int], max_batch_size: int, max_batch_samples: int | None = None) -> list[list[int]]:
    """Input order; a batch closes when one more utterance would exceed a bound."""
    if max_batch_size < 1:
        raise ValueError("padded_batches: max_batch_size must be >= 1")
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i, n in enumerate(lengths):
        grown = max(longest, int(n))
        if current and (len(current) >= max_batch_size or (max_batch_samples is not None and (len(current) + 1) * grown > max_batch_samples)):
            batches.append(current)
            current, grown = [], int(n)
        current.append(i)
        longest = grown
    if current:
        batches.append(current)
    return batches


def plan_batches(lengths: Sequence[int], mode: str = "bucketed", max_batch_size: int = 16, max_batch_samples: int | None = None, **bucket_kwargs: float) -> list[list[int]]:
    """Index batches for ``mode``: ``padded``/``batched`` (input order), ``bucketed`` (by length) or ``unbatched``."""
    if mode == "unbatched":
        return [[i] for i in range(len(lengths))]
    if mode in ("padded", "batched"):
        return padded_batches(lengths, max_batch_size, max_batch_samples)
    if mode == "bucketed":
        return length_buckets(lengths, max_batch_size=max_batch_size, max_batch_samples=max_batch_samples, **bucket_kwargs)
    raise ValueError(f"unknown batching mode {mode!r}; choose one of {', '.join(MODES)}")

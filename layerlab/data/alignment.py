"""Phone alignments under resampling: map sample boundaries to a new length without gaps or overlaps."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from layerlab.data.records import PhoneSpan


def spans_of(alignment: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(phones, starts, ends) of an alignment as a dataset row holds it: (phone, start, end) tuples or dicts."""
    phones, starts, ends = [], [], []
    for item in alignment:
        p, s, e = (item["phone"], item["start"], item["end"]) if isinstance(item, dict) else item
        phones.append(str(p))
        starts.append(int(s))
        ends.append(int(e))
    return phones, np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)


def rescale_spans(spans: Sequence[PhoneSpan], old_length: int, new_length: int) -> list[PhoneSpan]:
    """Map spans over ``[0, old_length)`` onto ``[0, new_length)`` (after resampling).

    Every boundary is scaled and rounded (equal boundaries stay equal, so a tiling stays a tiling),
    ``old_length`` maps exactly to ``new_length`` (the resampler's real output length), and
    boundaries are then nudged so that no span that had samples collapses to zero length.
    """
    if not spans:
        return []
    if old_length <= 0 or new_length <= 0:
        raise ValueError(f"lengths must be positive, got {old_length} -> {new_length}")
    if any(s.start < 0 or s.end < s.start or s.end > old_length for s in spans):
        raise ValueError(f"alignment spans must satisfy 0 <= start <= end <= {old_length}")

    def scale(b: int) -> int:
        return new_length if b == old_length else min(new_length, int(round(b * new_length / old_length)))

    points = sorted({p for s in spans for p in (s.start, s.end)})
    mapped = {p: scale(p) for p in points}
    # keep distinct original boundaries distinct (strictly increasing), within [0, new_length]
    ordered = [mapped[p] for p in points]
    for i in range(1, len(ordered)):
        ordered[i] = max(ordered[i], ordered[i - 1] + 1)
    for i in range(len(ordered) - 2, -1, -1):
        ordered[i] = min(ordered[i], ordered[i + 1] - 1)
    if points[-1] == old_length:
        ordered[-1] = new_length
    if ordered[0] < 0:
        raise ValueError(f"{len(points) - 1} distinct spans do not fit in {new_length} samples")
    final = dict(zip(points, ordered))
    return [PhoneSpan(s.phone, final[s.start], final[s.end]) for s in spans]

"""What one utterance is before it enters a shard: audio plus every label a probing task needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import numpy as np


@dataclass(frozen=True)
class PhoneSpan:
    """One phone of a frame-level alignment: ``[start, end)`` in samples at the row's sample rate."""

    phone: str
    start: int
    end: int


AudioInput = Union[np.ndarray, bytes]


@dataclass
class AudioRecord:
    """An utterance to be written to a shard.

    ``audio`` is either a waveform (``[S]`` or ``[S, C]`` float array at ``sample_rate``) or the
    bytes of an encoded file in any format libsndfile reads (then ``sample_rate`` may be 0).
    ``labels`` maps task names to labels (e.g. ``{"ks": "yes"}``); ``splits`` maps task names to
    ``train``/``dev``/``test``. ``alignment`` spans are in samples at ``sample_rate``.
    """

    id: str
    audio: AudioInput
    speaker: str
    source: str
    sample_rate: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    splits: dict[str, str] = field(default_factory=dict)
    transcript: str | None = None
    alignment: list[PhoneSpan] | None = None

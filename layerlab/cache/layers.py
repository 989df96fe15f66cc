"""Each cached layer's geometry: dim, frame rate, hop and frame-count convention -> exact sample/frame maps.

Conventions (``num_frames`` from ``num_samples`` S, hop H):

* ``stride``   — ``(S - 1) // H + 1``; frame i starts at sample ``i * H`` (s3prl upstreams)
* ``centered`` — ``S // H + 1``; frame i is centred on sample ``i * H`` (centred STFT: speechbrain, GE2E)
* ``window``   — ``(S - W) // H + 1`` for window W; frame i covers ``[i * H, i * H + W)`` (Kaldi
  fbank/MFCC with snip_edges, HF wav2vec2-style conv stacks with receptive field W)
* ``utterance`` — one vector per utterance (no frames)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

Level = Literal["frame", "utterance"]
CONVENTIONS = ("stride", "centered", "window", "utterance")


@dataclass(frozen=True)
class LayerMeta:
    """One cached layer: name, dim, frame rate (None = utterance level), hop and frame-count convention."""

    name: str
    dim: int
    frame_rate_hz: float | None
    hop_samples: int | None
    frame_convention: str
    window_samples: int | None = None

    @property
    def level(self) -> Level:
        """``frame`` or ``utterance``."""
        return "utterance" if self.frame_rate_hz is None else "frame"

    def num_frames(self, num_samples: int | np.ndarray) -> int | np.ndarray:
        """Frames the model emits for ``num_samples`` samples of audio (1 at utterance level)."""
        s = np.asarray(num_samples, dtype=np.int64)
        if self.frame_convention == "utterance" or self.hop_samples is None:
            out = np.ones_like(s)
        elif self.frame_convention == "stride":
            out = (s - 1) // self.hop_samples + 1
        elif self.frame_convention == "centered":
            out = s // self.hop_samples + 1
        elif self.frame_convention == "window":
            out = np.maximum((s - int(self.window_samples or 0)) // self.hop_samples + 1, 0)
        else:
            raise ValueError(f"layer {self.name}: unknown frame convention {self.frame_convention!r}")
        return int(out) if out.ndim == 0 else out

    def frame_center(self, frame: int | np.ndarray) -> np.ndarray:
        """The sample at the centre of frame ``frame`` (in samples, float)."""
        self._need_frames()
        f = np.asarray(frame, dtype=np.float64)
        hop = float(self.hop_samples)  # type: ignore[arg-type]
        if self.frame_convention == "centered":
            return f * hop
        if self.frame_convention == "window":
            return f * hop + (float(self.window_samples or 0) - 1) / 2
        return f * hop + (hop - 1) / 2  # stride: frame i summarises [i*H, (i+1)*H)

    def frame_index(self, sample: int | np.ndarray) -> int | np.ndarray:
        """The frame whose centre is nearest to ``sample`` (ties to the earlier frame)."""
        self._need_frames()
        s = np.asarray(sample, dtype=np.float64)
        hop = float(self.hop_samples)  # type: ignore[arg-type]
        offset = float(self.frame_center(0))
        idx = np.maximum(np.ceil((s - offset) / hop - 0.5), 0).astype(np.int64)
        return int(idx) if idx.ndim == 0 else idx

    def spans_to_frames(self, starts: Sequence[int] | np.ndarray, ends: Sequence[int] | np.ndarray, num_frames: int) -> np.ndarray:
        """Per-frame span index: frame t gets the span ``[start, end)`` (samples) holding its centre, -1 if none.

        Exact for tiled alignments (phone spans): every frame whose centre falls in a span gets it. Edge
        frames whose centre lies past the audio (padding of the last hop) take the nearest sample's span.
        """
        self._need_frames()
        st, en = np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)
        out = np.full(num_frames, -1, dtype=np.int64)
        if len(st) == 0:
            return out
        centres = np.clip(self.frame_center(np.arange(num_frames)), st.min(), en.max() - 1)
        order = np.argsort(st, kind="stable")
        pos = np.searchsorted(st[order], centres, side="right") - 1
        ok = pos >= 0
        cand = order[np.clip(pos, 0, None)]
        ok &= centres < en[cand]
        out[ok] = cand[ok]
        return out

    def _need_frames(self) -> None:
        if self.level == "utterance" or self.hop_samples is None:
            raise ValueError(f"layer {self.name} is utterance-level: it has no frames")


def convention_for_spec(model_spec: str) -> tuple[str, int | None]:
    """(convention, window) of a model family, for caches written before layers recorded it."""
    prefix = model_spec.split(":", 1)[0]
    if prefix == "s3prl":
        return "stride", None
    if prefix in ("hf", "fbank", "mfcc"):
        return "window", 400
    return "centered", None  # speechbrain, ckpt (ECAPA), ge2e: centred STFT front ends

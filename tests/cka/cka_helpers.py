"""Synthetic layer stacks with known structure for the CKA tests."""

from __future__ import annotations

import numpy as np


def layer_stack(n: int, dims: list[int], seed: int = 0, offset: float = 0.0) -> list[np.ndarray]:
    """Layers that drift gradually from a common latent (realistic, non-trivial CKA between 0 and 1)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 8))
    out = []
    for i, d in enumerate(dims):
        mix = rng.standard_normal((8, d))
        noise = rng.standard_normal((n, d)) * (0.3 + 0.4 * i)
        out.append(base @ mix + noise + offset * (1.0 + rng.random(d)))
    return out


def pad_utterances(frames: list[np.ndarray], lengths: list[int], seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Split flat frames into utterances of ``lengths`` and pad them with garbage into [B, T, D]."""
    rng = np.random.default_rng(seed)
    t_max = max(lengths)
    padded = []
    for x in frames:
        out = rng.standard_normal((len(lengths), t_max, x.shape[1])) * 1e3 + 7e3
        start = 0
        for b, ln in enumerate(lengths):
            out[b, :ln] = x[start : start + ln]
            start += ln
        padded.append(out)
    return padded, np.asarray(lengths)

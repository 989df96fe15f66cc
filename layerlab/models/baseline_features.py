"""``fbank`` and ``mfcc``: one-layer hand-crafted baselines, as SUPERB's FBANK baseline computes them.

Kaldi-compatible features (torchaudio.compliance.kaldi, 25 ms / 10 ms, snip_edges), then first and
second deltas (window 5) and per-utterance mean/variance normalisation: fbank 80 x 3 = 240 dims,
mfcc 13 x 3 = 39 dims, 100 Hz. Computed per utterance, so padding never leaks in.
"""

from __future__ import annotations

import torch

from layerlab.models.base import LayerInfo, LayeredModel

SAMPLE_RATE = 16000
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
DELTA_ORDER = 2
DELTA_WIN = 5
CMVN_EPS = 1e-10


def kaldi_frames(lengths: torch.Tensor) -> torch.Tensor:
    """Frames of Kaldi features with snip_edges: ``1 + (len - 400) // 160``."""
    return torch.div(lengths - WINDOW, HOP, rounding_mode="floor") + 1


def add_deltas(feats: torch.Tensor, order: int = DELTA_ORDER, win_length: int = DELTA_WIN) -> torch.Tensor:
    """Append ``order`` successive deltas to [T, F] features -> [T, F * (order + 1)]."""
    import torchaudio

    out = [feats]
    for _ in range(order):
        out.append(torchaudio.functional.compute_deltas(out[-1].T[None], win_length=win_length)[0].T)
    return torch.cat(out, dim=-1)


def utterance_cmvn(feats: torch.Tensor) -> torch.Tensor:
    """Per-utterance mean and variance normalisation of [T, F] features."""
    std = feats.std(dim=0, keepdim=True) if feats.shape[0] > 1 else torch.ones_like(feats[:1])
    return (feats - feats.mean(dim=0, keepdim=True)) / (CMVN_EPS + std)


class KaldiBaseline(LayeredModel):
    """A single 'layer' of Kaldi fbank or MFCC features with deltas and CMVN."""

    padding_invariant = True
    min_samples = WINDOW
    frame_convention = "window"  # Kaldi snip_edges: 1 + (len - 400) // 160
    window_samples = WINDOW

    def __init__(self, kind: str, spec: str, device: str | torch.device | None = None):
        super().__init__()
        if kind not in ("fbank", "mfcc"):
            raise ValueError(f"unknown baseline feature {kind!r}")
        self.kind = kind
        self.spec = spec
        self.sample_rate = SAMPLE_RATE
        base_dim = 80 if kind == "fbank" else 13
        self.layers = [LayerInfo(kind, base_dim * (DELTA_ORDER + 1), SAMPLE_RATE / HOP)]
        self._finish_init(device)

    def _one(self, wav: torch.Tensor) -> torch.Tensor:
        from torchaudio.compliance import kaldi

        common = dict(sample_frequency=SAMPLE_RATE, frame_length=25.0, frame_shift=10.0, dither=0.0)
        if self.kind == "fbank":
            feats = kaldi.fbank(wav[None], num_mel_bins=80, use_log_fbank=True, **common)
        else:
            feats = kaldi.mfcc(wav[None], num_ceps=13, **common)
        return utterance_cmvn(add_deltas(feats))

    def _layers(self, wavs: torch.Tensor, lengths: torch.Tensor):
        n = kaldi_frames(lengths)
        out = torch.zeros(wavs.shape[0], int(n.max()), self.dims[0], device=wavs.device)
        for i in range(wavs.shape[0]):
            feats = self._one(wavs[i, : int(lengths[i])])
            out[i, : feats.shape[0]] = feats
        return [out], [n]


def load_fbank(arg: str = "", spec: str = "fbank", device: str | torch.device | None = None) -> KaldiBaseline:
    """The 240-dim fbank baseline (80 log-mel + deltas + CMVN)."""
    return KaldiBaseline("fbank", spec, device)


def load_mfcc(arg: str = "", spec: str = "mfcc", device: str | torch.device | None = None) -> KaldiBaseline:
    """The 39-dim MFCC baseline (13 cepstra + deltas + CMVN)."""
    return KaldiBaseline("mfcc", spec, device)

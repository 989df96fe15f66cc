"""``planted``: a known-answer layered model whose layers' information content is fixed by construction.

The instrument check (issue 20, item 7): probes, layer weights, CKA and findings run on this model must
recover what was planted, in the manner of representational-similarity benchmarks (ReSi). Every layer
is computed from the audio alone (per utterance, so padding never leaks in), 100 Hz, Kaldi framing
(25 ms window, 10 ms hop, snip_edges), from a 40-band log-mel spectrogram ``F`` [T, 40]:

* ``noise``: seeded Gaussian noise, independent of the audio's content (its per-utterance seed is a
  checksum of the samples, so a batch and the utterance alone give the same draw). Chance on every
  probe; debiased CKA with every other layer ~ 0.
* ``speaker``: the utterance's mean log-mel, repeated on every frame. Utterance-level information only
  (speaker, channel); no frame-to-frame content, so PR is at its floor.
* ``mix``: a fixed mixture ``(content + speaker_c) / 2 + noise' / 2`` (``speaker_c``: speaker minus a
  fixed reference level, ``noise'`` a second seeded stream), rotated by a seeded orthogonal matrix: a
  degraded copy of both, positive CKA with each, best at neither task.
* ``content``: ``F`` with its first and second deltas (window 5, as the FBANK baseline: a frame-wise linear
  probe needs that temporal context to read phones; 120 dims), per-utterance mean and variance
  normalisation (speaker normalised away) plus
  a seeded per-utterance offset of small noise (so the utterance mean, which CMVN makes zero, carries no
  information yet keeps utterance-level CKA defined). Best for PR; SID at chance on the pooled tier.

Options: ``planted:seed=N`` (noise streams and the mixing rotation), ``order=a+b+...`` (layer order, a
permutation of the four names; default ``noise+speaker+mix+content``, so content is the deepest layer and
"deep layers specialise in content" holds by construction, while ``order=content+mix+speaker+noise``
violates it). ``EXPECT`` states the answers a correct instrument must give.
"""

from __future__ import annotations

import zlib
from typing import Any

import torch

from layerlab.models.base import LayerInfo, LayeredModel
from layerlab.models.baseline_features import add_deltas, utterance_cmvn
from layerlab.models.errors import UnknownModelSpec

SAMPLE_RATE = 16000
WINDOW = 400
HOP = 160
N_MELS = 40
#: content = log-mel with first and second deltas
CONTENT_DIM = 3 * N_MELS
LAYERS = ("noise", "speaker", "mix", "content")
DEFAULT_ORDER = LAYERS
#: scale of the per-utterance noise offset added to ``content`` (CMVN frames have unit variance)
CONTENT_OFFSET = 0.05
#: a fixed log-mel reference level subtracted from ``speaker`` inside ``mix`` (keeps both parts of similar scale)
SPEAKER_REFERENCE = 10.0
OPTIONS = ("seed", "order")


def planted_expectations(order: tuple[str, ...] = DEFAULT_ORDER) -> dict[str, Any]:
    """What a correct instrument finds on the planted model with layers in ``order`` (read by the report)."""
    frame = list(order)
    others = [n for n in frame if n != "noise"]
    zero = [["noise", n] for n in others]
    if "speaker" in frame and "content" in frame:
        zero.append(["speaker", "content"])
    return {
        "pr_best": "content", "sid_best": "speaker",
        "chance_layers": ["noise"],
        "chance": {"pr": ["noise"], "sid": ["noise", "content"]},
        "cka_zero_pairs": [p for p in zero if all(x in frame for x in p)],
        # mix's variance is mostly its speaker part (log-mel levels vary across utterances far more than CMVN frames
        # within one), so only mix x speaker is declared clearly positive; mix x content is small at frame level and
        # zero at utterance level (CMVN content has a zero mean) by construction
        "cka_positive_pairs": [p for p in (["mix", "speaker"],) if all(x in frame for x in p)],
        "content_deepest": bool(frame and frame[-1] == "content"),
        "layer_order": frame,
        "layer_levels": dict.fromkeys(frame, "frame"),
    }


def parse_planted(arg: str, spec: str) -> dict[str, Any]:
    """Options of ``planted[:seed=N,order=a+b+c+d]``; one-line UnknownModelSpec for anything else."""
    opts: dict[str, Any] = {"seed": 0, "order": DEFAULT_ORDER}
    for part in filter(None, (p.strip() for p in arg.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in OPTIONS:
            raise UnknownModelSpec(f"model spec {spec!r}: bad option {part!r}; planted takes {', '.join(o + '=' for o in OPTIONS)} "
                                   "(e.g. planted:seed=0,order=noise+speaker+mix+content)")
        if key == "seed":
            try:
                opts["seed"] = int(value)
            except ValueError:
                raise UnknownModelSpec(f"model spec {spec!r}: seed must be an integer, got {value!r}") from None
            if opts["seed"] < 0:
                raise UnknownModelSpec(f"model spec {spec!r}: seed must be >= 0, got {value}")
        else:
            names = tuple(value.split("+"))
            if sorted(names) != sorted(LAYERS):
                raise UnknownModelSpec(f"model spec {spec!r}: order must list each of {'+'.join(LAYERS)} once, got {value!r}")
            opts["order"] = names
    return opts


class PlantedModel(LayeredModel):
    """Layers of known content (noise, speaker, mix, content) computed from log-mel frames; see the module doc."""

    padding_invariant = True
    min_samples = WINDOW
    frame_convention = "window"
    window_samples = WINDOW
    #: marks the known-answer model for the study and the report
    planted = True
    EXPECT: dict[str, Any] = planted_expectations()

    def __init__(self, seed: int = 0, order: tuple[str, ...] = DEFAULT_ORDER, spec: str = "planted",
                 device: str | torch.device | None = None):
        super().__init__()
        self.spec = spec
        self.seed = int(seed)
        self.order = tuple(order)
        self.sample_rate = SAMPLE_RATE
        self.layers = [LayerInfo(n, CONTENT_DIM if n == "content" else N_MELS, SAMPLE_RATE / HOP) for n in self.order]
        self.expect = planted_expectations(self.order)
        g = torch.Generator().manual_seed(self.seed)
        q, _ = torch.linalg.qr(torch.randn(N_MELS, N_MELS, generator=g, dtype=torch.float64))
        self.register_buffer("rotation", q.to(torch.float32), persistent=False)
        self._finish_init(device)

    def _noise(self, wav: torch.Tensor, stream: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Seeded Gaussian noise for one utterance and stream: the same for the utterance in any batch."""
        key = zlib.crc32(wav.detach().cpu().numpy().tobytes())
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + stream * 7_919 + key) % (2**63))
        return torch.randn(shape, generator=g)

    def utterance_layers(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every planted layer ([T, 40] each) of one utterance's valid samples."""
        from torchaudio.compliance import kaldi

        feats = kaldi.fbank(wav[None].cpu(), num_mel_bins=N_MELS, sample_frequency=SAMPLE_RATE, frame_length=25.0,
                            frame_shift=10.0, dither=0.0, use_log_fbank=True)
        t = feats.shape[0]
        mean = feats.mean(dim=0, keepdim=True)
        content = utterance_cmvn(add_deltas(feats)) + CONTENT_OFFSET * self._noise(wav, 3, (1, CONTENT_DIM))
        speaker = mean.expand(t, -1)
        mix = ((content[:, :N_MELS] + speaker - SPEAKER_REFERENCE) / 2 + self._noise(wav, 2, (t, N_MELS)) / 2) @ self.rotation.cpu()
        frames = self._noise(wav, 1, (t, N_MELS))
        # centred per utterance, then a small independent draw as its mean (as content's offset): the utterance mean
        # carries no trace of the utterance's length (an uncentred mean's spread is 1/sqrt(T), and length tells
        # speakers apart), and almost no between-utterance variance that frame-level CKA would see as clustered frames
        noise = frames - frames.mean(dim=0, keepdim=True) + CONTENT_OFFSET * self._noise(wav, 4, (1, N_MELS)) if t > 1 else frames
        return {"noise": noise, "speaker": speaker, "mix": mix, "content": content}

    def _layers(self, wavs: torch.Tensor, lengths: torch.Tensor):
        n = torch.div(lengths - WINDOW, HOP, rounding_mode="floor") + 1
        out = [torch.zeros(wavs.shape[0], int(n.max()), layer.dim) for layer in self.layers]
        for i in range(wavs.shape[0]):
            layers = self.utterance_layers(wavs[i, : int(lengths[i])])
            for k, name in enumerate(self.order):
                out[k][i, : layers[name].shape[0]] = layers[name]
        return [h.to(wavs.device) for h in out], [n] * len(self.order)


def load_planted(arg: str = "", spec: str = "planted", device: str | torch.device | None = None) -> PlantedModel:
    """The planted known-answer model; ``arg`` holds its options (``seed=N,order=a+b+c+d``)."""
    return PlantedModel(**parse_planted(arg, spec), spec=spec, device=device)

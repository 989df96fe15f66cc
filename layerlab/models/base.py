"""The one protocol every model is seen through: named layers with dims, frame rates and valid lengths.

Adapters subclass :class:`LayeredModel` and implement ``_layers(wavs, lengths)``; the base class
validates inputs, moves them to the model's device and runs under ``no_grad`` in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from layerlab.frames import valid_mask
from layerlab.models.errors import AudioInputError
from layerlab.runtime import pick_device


@dataclass
class LayerOutput:
    """Per-layer activations of one padded batch: ``hidden[l]`` is [B, T_l, D_l], ``lengths[l]`` is [B]."""

    hidden: list[torch.Tensor]
    lengths: list[torch.Tensor]
    names: list[str]

    def __post_init__(self) -> None:
        if not (len(self.hidden) == len(self.lengths) == len(self.names)):
            raise ValueError(
                f"LayerOutput: {len(self.hidden)} hidden, {len(self.lengths)} lengths, {len(self.names)} names"
            )

    def layer(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The (hidden, lengths) pair of the layer called ``name``."""
        i = self.names.index(name)
        return self.hidden[i], self.lengths[i]

    def unpad(self, index: int) -> list[torch.Tensor]:
        """Utterance ``index``'s valid frames of every layer: a list of [T_l, D_l] tensors."""
        return [h[index, : int(n[index])] for h, n in zip(self.hidden, self.lengths)]


@dataclass(frozen=True)
class LayerInfo:
    """Static description of one layer: name, feature dim, frame rate (None when utterance-level)."""

    name: str
    dim: int
    frame_rate: float | None

    @property
    def utterance_level(self) -> bool:
        """True for pooled statistics and embeddings (one vector per utterance, T == 1)."""
        return self.frame_rate is None


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn a user's device argument (None or ``auto`` = cuda when visible, else cpu) into a ``torch.device``."""
    return pick_device(device)


class LayeredModel(torch.nn.Module):
    """A frozen model with named layers. Call it as ``model(wavs[B, S], lengths[B]) -> LayerOutput``.

    Attributes every adapter sets: ``spec``, ``sample_rate``, ``layers`` (list of LayerInfo),
    ``padding_invariant`` (True when a padded batch gives the same valid frames as one utterance
    alone). Derived: ``layer_names``, ``dims``, ``frame_rates``, ``utterance_level``,
    ``num_parameters``, ``device``.
    """

    spec: str
    sample_rate: int = 16000
    layers: list[LayerInfo]
    padding_invariant: bool
    #: shortest input (samples) the model accepts; shorter utterances raise AudioInputError
    min_samples: int = 400
    #: how frame counts follow from sample counts (see layerlab.cache.layers): stride | centered | window
    frame_convention: str = "centered"
    #: analysis window (samples) for the ``window`` convention
    window_samples: int | None = None

    # ---- static description -------------------------------------------------------------
    @property
    def layer_names(self) -> list[str]:
        """Layer names in model order."""
        return [layer.name for layer in self.layers]

    @property
    def dims(self) -> list[int]:
        """Feature dimension D_l of each layer."""
        return [layer.dim for layer in self.layers]

    @property
    def frame_rates(self) -> list[float | None]:
        """Frames per second of each layer; None marks utterance-level layers (T == 1)."""
        return [layer.frame_rate for layer in self.layers]

    @property
    def utterance_level(self) -> list[bool]:
        """True for each layer that yields one vector per utterance."""
        return [layer.utterance_level for layer in self.layers]

    @property
    def num_parameters(self) -> int:
        """Number of parameters (weights only, buffers excluded)."""
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        """Device the weights live on."""
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return getattr(self, "_device", torch.device("cpu"))

    def layer_geometry(self) -> list[dict]:
        """Per layer: hop in samples and frame-count convention, so sample spans map to frames exactly."""
        out = []
        for layer in self.layers:
            if layer.frame_rate is None:
                out.append({"name": layer.name, "hop_samples": None, "frame_convention": "utterance", "window_samples": None})
            else:
                window = self.window_samples if self.frame_convention == "window" else None
                out.append({"name": layer.name, "hop_samples": int(round(self.sample_rate / layer.frame_rate)),
                            "frame_convention": self.frame_convention, "window_samples": window})
        return out

    def describe(self) -> list[dict]:
        """One dict per layer (name, dim, frame_rate, utterance_level): what ``models describe`` prints."""
        return [
            {"name": l.name, "dim": l.dim, "frame_rate": l.frame_rate, "utterance_level": l.utterance_level}
            for l in self.layers
        ]

    # ---- frozen: always eval ------------------------------------------------------------
    def train(self, mode: bool = True) -> "LayeredModel":
        """Layered models are frozen feature extractors: train() keeps them in eval mode."""
        return super().train(False)

    def _finish_init(self, device: str | torch.device | None) -> None:
        """Freeze, move to ``device`` and switch to eval; adapters call this at the end of __init__."""
        dev = resolve_device(device)
        self._device = dev
        for p in self.parameters():
            p.requires_grad_(False)
        self.to(dev)
        self.eval()

    # ---- forward ------------------------------------------------------------------------
    def forward(
        self, wavs: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None, sample_rate: int | None = None
    ) -> LayerOutput:
        """Run a padded batch: ``wavs`` [B, S] float, ``lengths`` [B] valid samples (None = all S)."""
        wavs, lengths = self._check_inputs(wavs, lengths, sample_rate)
        with torch.no_grad():
            hidden, out_lengths = self._layers(wavs, lengths)
        return LayerOutput(hidden=list(hidden), lengths=[n.to(torch.long) for n in out_lengths], names=self.layer_names)

    def _layers(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        raise NotImplementedError

    def _check_inputs(
        self, wavs: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None, sample_rate: int | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        name = getattr(self, "spec", type(self).__name__)
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            raise AudioInputError(
                f"{name}: audio at {sample_rate} Hz but the model expects {self.sample_rate} Hz; resample first"
            )
        if not isinstance(wavs, torch.Tensor):
            raise AudioInputError(f"{name}: wavs must be a torch.Tensor [B, S], got {type(wavs).__name__}")
        if wavs.dim() != 2:
            raise AudioInputError(f"{name}: wavs must be 2-D [B, S] (batch, samples), got shape {tuple(wavs.shape)}")
        if not wavs.is_floating_point():
            raise AudioInputError(f"{name}: wavs must be floating point in [-1, 1], got dtype {wavs.dtype}")
        batch, samples = wavs.shape
        if lengths is None:
            lengths = torch.full((batch,), samples, dtype=torch.long)
        lengths = torch.as_tensor(lengths, dtype=torch.long).reshape(-1).cpu()
        if lengths.numel() != batch:
            raise AudioInputError(f"{name}: {lengths.numel()} lengths for a batch of {batch}")
        if batch == 0:
            raise AudioInputError(f"{name}: empty batch")
        if int(lengths.max()) > samples:
            raise AudioInputError(f"{name}: a length ({int(lengths.max())}) exceeds the padded size {samples}")
        if int(lengths.min()) < self.min_samples:
            raise AudioInputError(
                f"{name}: an utterance has {int(lengths.min())} samples; the model needs at least "
                f"{self.min_samples} ({self.min_samples / self.sample_rate * 1000:.0f} ms)"
            )
        dev = self.device
        return wavs.to(dev, torch.float32), lengths.to(dev)


def frames_after_stride(lengths: torch.Tensor, stride: int) -> torch.Tensor:
    """Frame count ``(len - 1) // stride + 1`` (s3prl's convention: 1 s at 320 -> 50 frames)."""
    return torch.div(lengths - 1, stride, rounding_mode="floor") + 1


def frames_centered(lengths: torch.Tensor, hop: int) -> torch.Tensor:
    """Frame count of a centred STFT, ``len // hop + 1`` (speechbrain / librosa: 1 s at 160 -> 101)."""
    return torch.div(lengths, hop, rounding_mode="floor") + 1


#: boolean [B, max_len] mask, True on valid positions (the one implementation lives in layerlab.frames)
length_mask = valid_mask

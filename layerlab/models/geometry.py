"""A model's layer geometry (names, widths, frame rates) and parameter count, without building the model.

What planning needs before any actor starts (joint extraction groups sized to actor memory): read
from a hub-name table, or from a local checkpoint's config (memory-mapped: only the pickle is read),
and for the small built-in models from the model itself. ``None`` when it is not knowable offline
(a remote checkpoint, a model trained in the study, an unknown folder layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: s3prl hub names: (transformer layers, width, parameters) of the published checkpoints
S3PRL_HUB = {
    "hubert_base": (12, 768, 94_700_000), "hubert_large_ll60k": (24, 1024, 316_600_000),
    "wavlm_base": (12, 768, 94_700_000), "wavlm_base_plus": (12, 768, 94_700_000), "wavlm_large": (24, 1024, 316_600_000),
}
S3PRL_FRAME_RATE_HZ = 50.0
ECAPA_FRAME_RATE_HZ = 100.0


@dataclass(frozen=True)
class Geometry:
    """Layer names, widths and frame rates (None: an utterance-level layer) and the number of parameters."""

    names: list[str]
    dims: list[int]
    frame_rates_hz: list[float | None]
    num_parameters: int

    def frame_layers(self, selection: list[str] | None = None) -> list[tuple[str, int, float]]:
        """(name, dim, rate) of the frame-level layers, all or the named ones (unknown names are left out)."""
        keep = [(n, d, r) for n, d, r in zip(self.names, self.dims, self.frame_rates_hz) if r is not None]
        return keep if selection is None else [x for x in keep if x[0] in selection]


def _s3prl(layers: int, dim: int, params: int) -> Geometry:
    return Geometry([f"hidden_{i}" for i in range(layers + 1)], [dim] * (layers + 1), [S3PRL_FRAME_RATE_HZ] * (layers + 1), params)


def _ecapa(config: dict[str, Any], params: int) -> Geometry:
    channels = [int(c) for c in config.get("channels", [1024, 1024, 1024, 1024, 3072])]
    names = [f"block{i}" for i in range(len(channels) - 1)] + ["mfa", "asp", "embedding"]
    dims = channels[:-1] + [channels[-1], 2 * channels[-1], int(config.get("lin_neurons", 192))]
    rates: list[float | None] = [ECAPA_FRAME_RATE_HZ] * len(channels) + [None, None]
    return Geometry(names, dims, rates, params)


def _tensor_count(tree: Any) -> int:
    import torch

    if isinstance(tree, torch.Tensor):
        return int(tree.numel())
    if isinstance(tree, dict):
        return sum(_tensor_count(v) for v in tree.values())
    return 0


def _from_checkpoint(url: str, family: str | None = None) -> Geometry | None:
    """Geometry from a local checkpoint's config (s3prl WavLM/HuBERT, layerlab ECAPA); None for other formats."""
    from layerlab import storage
    from layerlab.models.formats import detect_format
    from layerlab.models.preflight import open_checkpoint

    if not storage.is_local(url) or not Path(url.removeprefix("file://")).is_file():
        return None
    ckpt = open_checkpoint(Path(url.removeprefix("file://")), "checkpoint")
    fmt = {"wavlm": "s3prl-wavlm", "hubert": "s3prl-hubert"}.get(family or "") or detect_format(ckpt, url)
    if fmt == "s3prl-wavlm":
        cfg = dict(ckpt["cfg"])
        return _s3prl(int(cfg.get("encoder_layers", 12)), int(cfg.get("encoder_embed_dim", 768)), _tensor_count(ckpt["model"]))
    if fmt == "s3prl-hubert":
        cfg = dict(ckpt["model_cfg"])
        return _s3prl(int(cfg.get("encoder_layers", 12)), int(cfg.get("encoder_embed_dim", 768)), _tensor_count(ckpt["model_weight"]))
    if fmt == "layerlab-ecapa-v1":
        from layerlab.models.formats import ecapa

        parsed = ecapa.parse(ckpt, url)
        return _ecapa(dict(parsed.config), _tensor_count(ckpt.get("state_dict", ckpt)))
    return None


def spec_geometry(spec: str) -> Geometry | None:
    """The geometry of the model ``spec`` loads, when knowable offline and cheaply (see the module doc)."""
    from layerlab.models.registry import parse_spec

    prefix, arg = parse_spec(spec)
    try:
        if prefix == "random":
            from layerlab.models.random_init import parse_random

            return spec_geometry(parse_random(arg, spec)[1])
        if prefix in ("fbank", "mfcc", "ge2e", "planted"):
            from layerlab.models.registry import load

            m = load(spec, device="cpu")
            return Geometry(list(m.layer_names), [int(d) for d in m.dims], [None if u else float(r) for u, r in zip(m.utterance_level, m.frame_rates)],
                            int(m.num_parameters))
        if prefix == "s3prl":
            name, _, url = arg.partition(":")
            if name in S3PRL_HUB:
                return _s3prl(*S3PRL_HUB[name])
            if name in ("wavlm_local", "hubert_local") and url:
                return _from_checkpoint(url, name.split("_")[0])
            return None
        if prefix == "ckpt":
            return _from_checkpoint(arg)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None

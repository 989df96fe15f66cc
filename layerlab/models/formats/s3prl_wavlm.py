"""``s3prl-wavlm``: WavLM as s3prl's ``wavlm_local`` loads it, ``{"cfg": dict, "model": state_dict}``.

layerlab adds ``"format": "s3prl-wavlm"`` (s3prl ignores extra keys), so the same file loads as
``ckpt:URL`` and as ``s3prl:wavlm_local:URL``.
"""

from __future__ import annotations

import io
from typing import Any

import torch

FORMAT = "s3prl-wavlm"


def to_dict(cfg: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The checkpoint dict s3prl's WavLM expert reads, plus the format field."""
    return {"format": FORMAT, "cfg": dict(cfg), "model": {k: v.detach().cpu() for k, v in state_dict.items()}}


def write(url: str, cfg: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> str:
    """Write the checkpoint to any fsspec URL atomically; returns the URL."""
    from layerlab.storage import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(to_dict(cfg, state_dict), buf)
    atomic_write_bytes(url, buf.getvalue())
    return url


def read(url: str) -> dict[str, Any]:
    """The checkpoint dict at ``url`` (validated by ``model_from``)."""
    from layerlab.models.formats.dispatch import read_ckpt_dict

    return read_ckpt_dict(url)


def model_from(ckpt: Any, url: str, spec: str, device: str | torch.device | None = None) -> Any:
    """The S3PRLModel (hidden_0..hidden_L, 50 Hz) for a loaded checkpoint dict."""
    from layerlab.models.s3prl_adapter import S3PRLModel, build_wavlm

    model, normalize = build_wavlm(ckpt, url)
    return S3PRLModel(model, normalize, "wavlm", spec, device)

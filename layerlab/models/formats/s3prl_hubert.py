"""``s3prl-hubert``: HuBERT in s3prl's converted format, loadable by ``hubert_local`` and ``ckpt:``.

``{"task_cfg", "model_cfg", "model_weight", "dictionaries_symbols"}`` plain dicts (Enum values as
strings, so ``weights_only`` loading accepts them), plus ``"format": "s3prl-hubert"`` and an
optional ``"meta"`` dict; s3prl ignores the extra keys.
"""

from __future__ import annotations

import dataclasses
import enum
import io
from typing import Any

import torch

FORMAT = "s3prl-hubert"


def plain(value: Any) -> Any:
    """Dataclass/Enum config values as plain Python (str/int/float/bool/list/dict)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def to_dict(task_cfg: Any, model_cfg: Any, state_dict: dict[str, torch.Tensor], symbols: list[list[str]],
            meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The converted-format checkpoint dict, with the format field."""
    out: dict[str, Any] = {
        "format": FORMAT,
        "task_cfg": plain(task_cfg),
        "model_cfg": plain(model_cfg),
        "model_weight": {k: v.detach().cpu() for k, v in state_dict.items()},
        "dictionaries_symbols": [list(map(str, s)) for s in symbols],
    }
    if meta:
        out["meta"] = plain(meta)
    return out


def write(url: str, task_cfg: Any, model_cfg: Any, state_dict: dict[str, torch.Tensor], symbols: list[list[str]],
          meta: dict[str, Any] | None = None) -> str:
    """Write the checkpoint to any fsspec URL atomically; returns the URL."""
    from layerlab.storage import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(to_dict(task_cfg, model_cfg, state_dict, symbols, meta), buf)
    atomic_write_bytes(url, buf.getvalue())
    return url


def read(url: str) -> dict[str, Any]:
    """The checkpoint dict at ``url`` (validated by ``model_from``)."""
    from layerlab.models.formats.dispatch import read_ckpt_dict

    return read_ckpt_dict(url)


def build(ckpt: dict[str, Any], url: str = "<memory>") -> tuple[torch.nn.Module, bool]:
    """(HubertModel with weights, normalize_waveform) from a loaded checkpoint dict."""
    from layerlab.models.s3prl_adapter import build_hubert

    return build_hubert(ckpt, url)


def model_from(ckpt: Any, url: str, spec: str, device: str | torch.device | None = None) -> Any:
    """The S3PRLModel (hidden_0..hidden_L, 50 Hz) for a loaded checkpoint dict."""
    from layerlab.models.s3prl_adapter import S3PRLModel

    model, normalize = build(ckpt, url)
    return S3PRLModel(model, normalize, "hubert", spec, device)

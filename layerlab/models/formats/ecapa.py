"""``layerlab-ecapa-v1``: speechbrain ECAPA_TDNN weights with the kwargs that build them.

``{"format": "layerlab-ecapa-v1", "config": {ECAPA_TDNN kwargs..., "n_mels": 80},
"state_dict": {...}, "meta": {...}}`` (``meta`` optional: recipe, epoch, metrics). Loads as
``ckpt:URL`` into the same ECAPAModel the ``speechbrain:`` adapter builds.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import torch

from layerlab.models.errors import CheckpointError

FORMAT = "layerlab-ecapa-v1"


@dataclass
class EcapaCheckpoint:
    """A read ECAPA checkpoint: the ECAPA_TDNN config, its weights, free-form metadata."""

    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)


def to_dict(config: dict[str, Any], state_dict: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint dict (CPU tensors, plain containers: loads with ``weights_only=True``)."""
    out: dict[str, Any] = {"format": FORMAT, "config": dict(config), "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}
    if meta:
        out["meta"] = dict(meta)
    return out


def write(url: str, config: dict[str, Any], state_dict: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> str:
    """Write a layerlab-ecapa-v1 checkpoint to any fsspec URL atomically; returns the URL."""
    from layerlab.storage import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(to_dict(config, state_dict, meta), buf)
    atomic_write_bytes(url, buf.getvalue())
    return url


def parse(ckpt: Any, url: str = "<memory>") -> EcapaCheckpoint:
    """Validate a loaded checkpoint dict; errors name the URL and what is wrong."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        keys = sorted(ckpt)[:6] if isinstance(ckpt, dict) else []
        raise CheckpointError(
            f"layerlab checkpoint {url}: wrong format (format={found!r}, keys={keys}); expected a dict with "
            f"format={FORMAT!r}, 'config' and 'state_dict'"
        )
    if not isinstance(ckpt.get("config"), dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"layerlab checkpoint {url}: needs a 'config' dict and a 'state_dict'")
    return EcapaCheckpoint(dict(ckpt["config"]), ckpt["state_dict"], dict(ckpt.get("meta") or {}))


def read(url: str) -> EcapaCheckpoint:
    """Read and validate the checkpoint at ``url``."""
    from layerlab.models.formats.dispatch import read_ckpt_dict

    return parse(read_ckpt_dict(url), url)


def build_modules(config: dict[str, Any], url: str = "<memory>") -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """(Fbank, sentence normalisation, ECAPA_TDNN) for ``config`` with readable config errors."""
    from layerlab.models.ecapa_adapter import build_ecapa

    try:
        return build_ecapa(config)
    except CheckpointError:
        raise
    except (TypeError, AssertionError, ValueError) as exc:
        raise CheckpointError(f"layerlab checkpoint {url}: invalid ECAPA config {config} ({exc})") from exc


def model_from(ckpt: Any, url: str, spec: str, device: str | torch.device | None = None) -> Any:
    """The ECAPAModel (block0..3, mfa, asp, embedding) for a loaded checkpoint dict."""
    from layerlab.models.ecapa_adapter import ECAPAModel, _copy_weights_strictly

    parsed = parse(ckpt, url)
    feats, norm, model = build_modules(parsed.config, url)
    _copy_weights_strictly(model, parsed.state_dict, f"layerlab checkpoint {url}")
    return ECAPAModel(feats, norm, model, spec, device)

"""``hf-dir``: a transformers model folder (config.json, weights, preprocessor_config.json).

layerlab marks folders it writes with ``layerlab_format.json`` (``{"format": "hf-dir", ...}``);
any transformers speech-encoder folder loads as ``ckpt:DIR`` or ``hf:DIR``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

FORMAT = "hf-dir"
MARKER = "layerlab_format.json"


def is_hf_dir(url: str) -> bool:
    """True when ``url`` is a folder holding a ``config.json`` (local or any fsspec URL)."""
    from layerlab import storage

    try:
        return storage.exists(storage.join(url, "config.json"))
    except Exception:
        return False


def write(directory: str | Path, model: Any, feature_extractor: Any | None = None, meta: dict[str, Any] | None = None) -> str:
    """``save_pretrained`` the model (and feature extractor) into a local folder, plus the format marker."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    if feature_extractor is not None:
        feature_extractor.save_pretrained(directory)
    (directory / MARKER).write_text(json.dumps({"format": FORMAT, **(meta or {})}, indent=1))
    return str(directory)


def read(url: str) -> dict[str, Any]:
    """The folder's format marker (``{"format": "hf-dir"}`` when it has none) and its URL."""
    from layerlab import storage

    marker = storage.join(url, MARKER)
    info = storage.read_json(marker) if storage.exists(marker) else {"format": FORMAT}
    return {**info, "url": url}


def model_from(ckpt: dict[str, Any], url: str, spec: str, device: str | torch.device | None = None) -> Any:
    """The HFSpeechModel (hidden_0..hidden_L) for the folder."""
    from layerlab.models.hf_adapter import load_hf

    return load_hf(url, spec=spec, device=device)

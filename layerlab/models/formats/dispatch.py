"""``ckpt:URL``: read the checkpoint, find its format, hand it to that format's model builder."""

from __future__ import annotations

import importlib
from typing import Any

import torch

from layerlab.models.errors import CheckpointError
from layerlab.models.fetch import fetch_file, load_torch_file

#: format name -> module (each has FORMAT, write(...), read(url), model_from(ckpt, url, spec, device))
FORMATS: dict[str, str] = {
    "layerlab-ecapa-v1": "layerlab.models.formats.ecapa",
    "s3prl-hubert": "layerlab.models.formats.s3prl_hubert",
    "s3prl-wavlm": "layerlab.models.formats.s3prl_wavlm",
    "hf-dir": "layerlab.models.formats.hf_dir",
}
#: key sets of checkpoints written by other tools (no "format" field)
KEY_SIGNATURES: dict[str, tuple[str, ...]] = {
    "s3prl-hubert": ("task_cfg", "model_cfg", "model_weight", "dictionaries_symbols"),
    "s3prl-wavlm": ("cfg", "model"),
}


def detect_format(ckpt: Any, url: str = "<memory>") -> str:
    """The format name of a loaded checkpoint dict: its ``format`` field, else its key signature."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {url}: expected a dict, got {type(ckpt).__name__}")
    fmt = ckpt.get("format")
    if fmt is not None:
        if fmt not in FORMATS:
            raise CheckpointError(f"checkpoint {url}: unknown format {fmt!r}; known: {', '.join(FORMATS)}")
        return str(fmt)
    for name, keys in KEY_SIGNATURES.items():
        if all(k in ckpt for k in keys):
            return name
    raise CheckpointError(
        f"checkpoint {url}: no 'format' field and keys {sorted(map(str, ckpt))[:8]} match no known format "
        f"({', '.join(FORMATS)})"
    )


def format_module(name: str) -> Any:
    """The module that reads and writes format ``name``."""
    if name not in FORMATS:
        raise CheckpointError(f"unknown checkpoint format {name!r}; known: {', '.join(FORMATS)}")
    return importlib.import_module(FORMATS[name])


def read_ckpt_dict(url: str) -> dict:
    """Fetch ``url`` (any fsspec URL) and ``torch.load`` it safely (weights_only)."""
    path = fetch_file(url, what="layerlab checkpoint")
    ckpt = load_torch_file(path, f"layerlab checkpoint {url}")
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"layerlab checkpoint {url}: expected a dict, got {type(ckpt).__name__}")
    return ckpt


def load_ckpt(arg: str, spec: str, device: str | torch.device | None = None) -> Any:
    """Build the LayeredModel for ``ckpt:URL`` from whatever format the checkpoint names."""
    from layerlab.models.formats import hf_dir

    if hf_dir.is_hf_dir(arg):
        return hf_dir.model_from(hf_dir.read(arg), arg, spec, device)
    ckpt = read_ckpt_dict(arg)
    fmt = detect_format(ckpt, arg)
    return format_module(fmt).model_from(ckpt, arg, spec, device)

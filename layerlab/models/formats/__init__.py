"""Checkpoint formats the zoo reads and layerlab's training writes: one module per format, read + write.

Every checkpoint layerlab writes names its format (a ``"format"`` field in the torch dict, or
``layerlab_format.json`` in a transformers folder); ``ckpt:URL`` dispatches on it:

=====================  ===================================================  ===========================
format                 module                                               also loads as
=====================  ===================================================  ===========================
``layerlab-ecapa-v1``  ``formats.ecapa`` (speechbrain ECAPA_TDNN weights)   (ckpt: only)
``s3prl-hubert``       ``formats.s3prl_hubert`` (s3prl converted HuBERT)    ``s3prl:hubert_local:URL``
``s3prl-wavlm``        ``formats.s3prl_wavlm`` (``{"cfg", "model"}``)       ``s3prl:wavlm_local:URL``
``hf-dir``             ``formats.hf_dir`` (transformers model folder)       ``hf:DIR``
=====================  ===================================================  ===========================

Checkpoints without a format field (s3prl's own releases) are recognised by their keys.
"""

from __future__ import annotations

from layerlab.models.formats.dispatch import (
    FORMATS,
    detect_format,
    load_ckpt,
    read_ckpt_dict,
)

__all__ = ["FORMATS", "detect_format", "load_ckpt", "read_ckpt_dict"]

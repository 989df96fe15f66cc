"""The model zoo: every model seen through one protocol, ``LayeredModel`` (named layers, dims, frame
rates, valid lengths). ``load(spec)`` imports only the adapter the spec's prefix names.

Specs and padding behaviour (``model.padding_invariant``: does a padded batch give the same valid
frames as the utterance alone?):

=====================================  ==================================  ==========================
spec                                   layers (rate)                       padding_invariant
=====================================  ==================================  ==========================
``s3prl:NAME``, ``s3prl:*_local:URL``  hidden_0..hidden_L (50 Hz)          False. GroupNorm (Base):
                                                                           every frame changes;
                                                                           layer_norm (Large): last
                                                                           frames, slightly the rest
``hf:ID_OR_DIR``                       hidden_0..hidden_L (50 Hz)          True only for layer-norm
                                                                           models fed an attention
                                                                           mask; else False
``speechbrain:DIR_OR_URL``, ``ckpt:``  block0..3, mfa (100 Hz), asp,       False: last frames change,
                                       embedding (utterance)               embedding cos ~0.9999
``ge2e``                               lstm1..3 (100 Hz), embedding        True
``fbank`` / ``mfcc``                   fbank 240-d / mfcc 39-d (100 Hz)    True
``planted[:seed=N,order=a+b+c+d]``     noise, speaker, mix, content        True (known-answer model:
                                       (40-d, 100 Hz)                      ``models/planted.py``)
``random:[seed=N:]SPEC``               SPEC's layers, random weights       as SPEC (random-init
                                                                           control; error for
                                                                           fbank/mfcc/planted)
=====================================  ==================================  ==========================

Utterance-level layers have T == 1 and frame rate ``None``. For exact per-utterance features from
a non-invariant model, extract ``unbatched`` (see ``layerlab.models.batching``).
"""

from __future__ import annotations

from layerlab.lazy_exports import lazy_getattr

# Exports resolve lazily, so importing a submodule (e.g. the CLI) does not import torch.
_HOMES = {
    "LayerInfo": "layerlab.models.base",
    "LayeredModel": "layerlab.models.base",
    "LayerOutput": "layerlab.models.base",
    "AudioInputError": "layerlab.models.errors",
    "CheckpointError": "layerlab.models.errors",
    "ModelError": "layerlab.models.errors",
    "UnknownModelSpec": "layerlab.models.errors",
    "load": "layerlab.models.registry",
    "parse_spec": "layerlab.models.registry",
}

__all__ = sorted(_HOMES)


__getattr__ = lazy_getattr(__name__, _HOMES)

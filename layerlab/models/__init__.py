"""The model zoo: every model (s3prl, transformers, speechbrain ECAPA, GE2E, baselines, our checkpoints)
seen through one protocol, ``LayeredModel``. Adapters are imported lazily by ``load(spec)``.
"""

from layerlab.models.base import LayerInfo, LayeredModel, LayerOutput
from layerlab.models.errors import AudioInputError, CheckpointError, ModelError, UnknownModelSpec
from layerlab.models.registry import load, parse_spec

__all__ = [
    "AudioInputError",
    "CheckpointError",
    "LayerInfo",
    "LayerOutput",
    "LayeredModel",
    "ModelError",
    "UnknownModelSpec",
    "load",
    "parse_spec",
]

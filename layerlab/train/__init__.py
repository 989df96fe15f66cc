"""Training recipes on Ray Train: supervised ECAPA-TDNN (AAM-softmax), DINO speaker SSL, miniature HuBERT.

``run_recipe(recipe, data, out, config=...)`` is the library entry point; ``layerlab train`` and
``jobs/train.py`` call it. Checkpoints are written through ``layerlab.models.formats``.
"""

from __future__ import annotations

from layerlab.lazy_exports import lazy_getattr

_HOMES = {
    "run_recipe": "layerlab.train.run",
    "load_config": "layerlab.train.config",
    "SupervisedConfig": "layerlab.train.config",
    "DinoConfig": "layerlab.train.config",
    "HubertTrainConfig": "layerlab.train.config",
}
__all__ = sorted(_HOMES)
__getattr__ = lazy_getattr(__name__, _HOMES)

"""Training recipes: supervised ECAPA-TDNN (AAM-softmax), DINO speaker SSL, miniature HuBERT."""

from __future__ import annotations

import importlib
from typing import Any

#: recipe name -> "module:class"
RECIPES: dict[str, str] = {
    "supervised": "layerlab.train.recipes.supervised:SupervisedRecipe",
    "dino": "layerlab.train.recipes.dino:DinoRecipe",
    "hubert": "layerlab.train.recipes.hubert:HubertRecipe",
}


def recipe_class(name: str) -> Any:
    """The recipe class for ``name`` (imported on first use)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    module, cls = RECIPES[name].split(":")
    return getattr(importlib.import_module(module), cls)

"""Lazy package exports: a package names its public objects' home modules and imports them on first use.

Keeps ``import layerlab.<pkg>`` (and so CLI registration) free of torch and Ray.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_getattr(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` resolving ``name`` from ``homes[name]`` on first access."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(homes[name]), name)

    return __getattr__

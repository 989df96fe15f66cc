"""Activation caches: the format, the tier writer, and the one reader everything uses (``open_cache``).

Names resolve lazily so importing the package (e.g. for CLI registration) stays cheap.
"""

from __future__ import annotations

from layerlab.lazy_exports import lazy_getattr

_HOMES = {
    "CacheError": "layerlab.cache.reader",
    "CacheNotFound": "layerlab.cache.reader",
    "CacheReader": "layerlab.cache.reader",
    "FramesRow": "layerlab.cache.reader",
    "IncompleteCache": "layerlab.cache.reader",
    "Pooled": "layerlab.cache.reader",
    "open_cache": "layerlab.cache.reader",
    "select_layers": "layerlab.cache.reader",
    "LayerMeta": "layerlab.cache.layers",
    "CacheMetadata": "layerlab.cache.format",
    "CacheManifest": "layerlab.cache.format",
    "TierWriter": "layerlab.cache.writer",
    "UtteranceFeatures": "layerlab.cache.writer",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_getattr(__name__, _HOMES)

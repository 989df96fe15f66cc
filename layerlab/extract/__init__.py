"""Extraction: audio shards -> activation cache (frames and pooled tiers) + CKA partial states, on Ray.

Importing this package does not import Ray: the config and summary are plain Python; ``extract``
(Ray) is imported on first use. Caches are read with :func:`layerlab.cache.open_cache`.
"""

from __future__ import annotations

from layerlab.extract.config import CKASideOutput, ExtractConfig
from layerlab.extract.summary import ExtractSummary
from layerlab.lazy_exports import lazy_getattr

__all__ = ["CKASideOutput", "ExtractConfig", "ExtractSummary", "extract", "run_extract"]


__getattr__ = lazy_getattr(__name__, {"extract": "layerlab.extract.pipeline", "run_extract": "layerlab.extract.pipeline"})

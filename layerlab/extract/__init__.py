"""Extraction: audio shards -> activation cache (frames and pooled tiers) + CKA partial states, on Ray.

Importing this package does not import Ray: the config, cache format and reader are plain
Python; ``extract`` (Ray) is imported on first use.
"""

from __future__ import annotations

from layerlab.lazy_exports import lazy_getattr
from layerlab.extract.cache_reader import Cache, iter_frames, iter_pooled, open_cache, pooled_matrix, read_quarantine, verify_cache
from layerlab.extract.config import CKASideOutput, ExtractConfig
from layerlab.extract.summary import ExtractSummary

__all__ = [
    "CKASideOutput", "Cache", "ExtractConfig", "ExtractSummary", "extract", "iter_frames", "iter_pooled",
    "open_cache", "pooled_matrix", "read_quarantine", "verify_cache",
]


__getattr__ = lazy_getattr(__name__, {"extract": "layerlab.extract.pipeline"})

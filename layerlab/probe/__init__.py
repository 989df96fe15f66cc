"""SUPERB-style probing on the activation cache: weighted-sum and per-layer probes, swept with Ray Tune.

Probes read caches only (through ``layerlab.cache``) and never load or run a model. Importing this
package imports neither torch nor Ray; ``run_probe`` and the configs load on first use.
"""

from __future__ import annotations

from layerlab.lazy_exports import lazy_getattr

__all__ = ["ProbeConfig", "ProbeInputError", "crop_seconds", "frames_needed", "run_probe"]

__getattr__ = lazy_getattr(__name__, {
    "run_probe": "layerlab.probe.api", "ProbeConfig": "layerlab.probe.config", "ProbeInputError": "layerlab.probe.source",
    "frames_needed": "layerlab.probe.needs", "crop_seconds": "layerlab.probe.needs",
})

"""Layer x layer linear CKA: streaming float64 accumulators, estimators, reducer, tables and figures.

Public entry point: :func:`cka_matrix`. Accumulators: :class:`FeatureCKA` (biased and debiased,
full data) and :class:`MinibatchCKA` (Nguyen et al. 2021). Names resolve lazily so importing the
package (e.g. for CLI registration) does not import torch; nothing here imports Ray.
"""

from __future__ import annotations

from layerlab.lazy_exports import lazy_getattr

_EXPORTS = {
    "cka_matrix": "layerlab.cka.api",
    "FeatureCKA": "layerlab.cka.feature_stats",
    "pilot_shift": "layerlab.cka.feature_stats",
    "MinibatchCKA": "layerlab.cka.minibatch",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)

"""Layer x layer linear CKA: streaming float64 accumulators, estimators, reducer, tables and figures.

Public entry point: :func:`cka_matrix`. Accumulators: :class:`FeatureCKA` (biased and debiased,
full data) and :class:`MinibatchCKA` (Nguyen et al. 2021). Importing this package never imports Ray.
"""

from layerlab.cka.api import cka_matrix
from layerlab.cka.feature_stats import FeatureCKA, pilot_shift
from layerlab.cka.minibatch import MinibatchCKA

__all__ = ["cka_matrix", "FeatureCKA", "MinibatchCKA", "pilot_shift"]

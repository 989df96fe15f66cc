"""Classification accuracy."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def accuracy(predictions: Sequence[object] | np.ndarray, targets: Sequence[object] | np.ndarray) -> float:
    """Fraction of predictions equal to their targets (in [0, 1]); errors on empty or unequal lengths."""
    pred, true = np.asarray(predictions), np.asarray(targets)
    if pred.shape[0] != true.shape[0]:
        raise ValueError(f"accuracy: {pred.shape[0]} predictions but {true.shape[0]} targets")
    if pred.shape[0] == 0:
        raise ValueError("accuracy: no predictions")
    return float(np.mean(pred == true))

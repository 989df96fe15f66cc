"""Information between discrete units and labels from a contingency table N[unit, label] (counts, mergeable by addition).

PNMI (phone-normalised mutual information, HuBERT paper): I(unit; label) / H(label), in [0, 1]; 1 when
the units determine the label. Label purity: E_unit[max_label p(label | unit)], the accuracy of
labelling each unit with its most frequent label; unit purity: E_label[max_unit p(unit | label)].
Rows and columns that are all zero are ignored, so tables over a shared class list merge exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def contingency_scores(table: Any) -> dict[str, float]:
    """``pnmi``, ``mutual_information`` (nats), ``label_entropy`` (nats), ``label_purity``, ``unit_purity`` of N[unit, label].

    Every value is NaN for an empty table; PNMI is NaN when the labels have no entropy (one label).
    """
    n = np.asarray(table, dtype=np.float64)
    if n.ndim != 2:
        raise ValueError(f"contingency table: expected a 2-D [unit, label] array, got shape {n.shape}")
    total = float(n.sum())
    if total <= 0:
        nan = float("nan")
        return {"pnmi": nan, "mutual_information": nan, "label_entropy": nan, "label_purity": nan, "unit_purity": nan}
    p = n / total
    pu, pl = p.sum(1), p.sum(0)
    h_label = _entropy(pl)
    mi = max(_entropy(pu) + h_label - _entropy(p.ravel()), 0.0)
    return {
        "pnmi": mi / h_label if h_label > 0 else float("nan"),
        "mutual_information": mi,
        "label_entropy": h_label,
        "label_purity": float(p.max(1).sum()),
        "unit_purity": float(p.max(0).sum()),
    }

"""Measure agreement: how similarly the measures rank layer correspondences (Spearman between measures over layer pairs).

Per block (A x A, B x B, A x B), each measure gives one value per layer pair; two measures agree when
they order the pairs alike. Within a model the diagonal (a layer with itself) is left out, and a
pair of symmetric measures uses each unordered pair once. Distances (Procrustes) are negated first,
so that a positive coefficient always means agreement.
"""

from __future__ import annotations

import io
import itertools
import json
from typing import Any, Mapping, Sequence

import numpy as np

from layerlab.cka.measure_registry import MEASURES


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN with fewer than 3 pairs or a constant side."""
    from scipy.stats import rankdata

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 3:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = float(np.sqrt((rx @ rx) * (ry @ ry)))
    return float(rx @ ry / den) if den > 0 else float("nan")


def agreement_rows(matrices: Mapping[str, np.ndarray], within: bool) -> list[dict[str, Any]]:
    """One row per pair of measures: ``measure_1, measure_2, spearman, n_pairs, note`` over one block's layer pairs."""
    rows = []
    for m1, m2 in itertools.combinations(list(matrices), 2):
        a, b = (np.asarray(matrices[m], dtype=np.float64) for m in (m1, m2))
        mask = np.ones(a.shape, dtype=bool)
        if within:
            mask &= ~np.eye(a.shape[0], dtype=bool)
            if MEASURES[m1].symmetric and MEASURES[m2].symmetric:
                mask &= np.triu(np.ones(a.shape, dtype=bool), 1)
        mask &= np.isfinite(a) & np.isfinite(b)
        sa = 1.0 if MEASURES[m1].similarity else -1.0
        sb = 1.0 if MEASURES[m2].similarity else -1.0
        rho = spearman(sa * a[mask], sb * b[mask])
        flipped = [m for m in (m1, m2) if not MEASURES[m].similarity]
        note = f"{', '.join(flipped)} negated (a distance)" if flipped else ""
        if not np.isfinite(rho):
            note = "; ".join(x for x in (note, f"undefined: {int(mask.sum())} layer pairs or a constant measure") if x)
        rows.append({"measure_1": m1, "measure_2": m2, "spearman": rho if np.isfinite(rho) else None, "n_pairs": int(mask.sum()), "note": note})
    return rows


def write_agreement(url: str, results: Mapping[str, Any], blocks: Mapping[str, tuple[slice, slice, int, int]], names: Sequence[Sequence[str]],
                    specs: Sequence[str], level: str) -> str:
    """Write the agreement table of every block (``model_a, model_b, block, level`` + :func:`agreement_rows`) to ``url``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from layerlab import storage

    out: list[dict[str, Any]] = []
    for tag, (rows, cols, i, j) in blocks.items():
        mats = {m: r.values[rows, cols] for m, r in results.items()}
        for row in agreement_rows(mats, within=i == j):
            out.append({"model_a": specs[i], "model_b": specs[j], "block": tag, "level": level, **row})
    table = pa.Table.from_pylist(out, schema=pa.schema([
        ("model_a", pa.string()), ("model_b", pa.string()), ("block", pa.string()), ("level", pa.string()),
        ("measure_1", pa.string()), ("measure_2", pa.string()), ("spearman", pa.float64()), ("n_pairs", pa.int64()), ("note", pa.string()),
    ]))
    meta = {"what": "Spearman rank correlation between two measures over the layer pairs of one block (within: off-diagonal)",
            "layers": {str(specs[k]): list(map(str, names[k])) for k in range(len(names))}}
    table = table.replace_schema_metadata({b"layerlab.measure_agreement": json.dumps(meta).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.atomic_write_bytes(url, buf.getvalue())
    return url

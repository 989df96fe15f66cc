"""Similarity matrices (CKA and the other measures) as tidy Parquet tables (one row per layer pair, layer names kept) and back.

Undefined entries (a constant layer) are written as nulls with the reason in ``note``, never as NaN.
"""

from __future__ import annotations

import io
import json
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def _floats(values: Any) -> pa.Array:
    """A float64 column with NaN written as null (a missing value, explained by the row's ``note``)."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    return pa.array(arr, mask=np.isnan(arr), type=pa.float64())


def matrix_table(matrix: np.ndarray, names_a: Sequence[str], names_b: Sequence[str], **meta: Any) -> pa.Table:
    """Long-format table: ``model_a, model_b, layer_a, layer_b, index_a, index_b, value``, ``measure``, ``note``, ``level``,
    ``estimator`` (+ ``cka``, the same values, for linear CKA; ``ci_low``/``ci_high`` and ``ci_group_by`` when given);
    ``notes`` (a matrix of strings) fills ``note``; the rest of ``meta`` goes to the schema metadata."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (len(names_a), len(names_b)):
        raise ValueError(f"matrix: shape {matrix.shape} does not match {len(names_a)} x {len(names_b)} layer names")
    measure = str(meta.setdefault("measure", "linear_cka"))
    notes = meta.pop("notes", None)
    ia, ib = np.meshgrid(np.arange(len(names_a)), np.arange(len(names_b)), indexing="ij")
    size = matrix.size
    note = [""] * size if notes is None else [str(x) for x in np.asarray(notes, dtype=object).ravel()]
    note = [n or ("undefined" if not np.isfinite(v) else "") for n, v in zip(note, matrix.ravel())]
    cols: dict[str, Any] = {
        "model_a": [str(meta.get("model_a", ""))] * size,
        "model_b": [str(meta.get("model_b", ""))] * size,
        "layer_a": [str(names_a[i]) for i in ia.ravel()],
        "layer_b": [str(names_b[j]) for j in ib.ravel()],
        "index_a": ia.ravel().astype(np.int32),
        "index_b": ib.ravel().astype(np.int32),
        "value": _floats(matrix),
    }
    if measure == "linear_cka":
        cols["cka"] = _floats(matrix)  # the same values under the name tables had before
    cols.update({
        "measure": [measure] * size,
        "note": note,
        "level": [str(meta.get("level", ""))] * size,
        "estimator": [str(meta.get("estimator", ""))] * size,
    })
    for key in ("ci_low", "ci_high"):
        if key in meta and meta[key] is not None:
            cols[key] = _floats(meta.pop(key))
        meta.pop(key, None)
    if "ci_low" in cols and meta.get("ci_group_by"):
        cols["ci_group_by"] = [str(meta["ci_group_by"])] * size  # what the interval's jackknife groups are
    table = pa.table(cols)
    doc = {"names_a": list(map(str, names_a)), "names_b": list(map(str, names_b)), **meta}
    return table.replace_schema_metadata({b"layerlab.cka": json.dumps(doc, default=str).encode()})


def write_matrix(url: str, matrix: np.ndarray, names_a: Sequence[str], names_b: Sequence[str], **meta: Any) -> None:
    """Write a CKA matrix to a Parquet file at any storage URL (atomically)."""
    from layerlab import storage

    buf = io.BytesIO()
    pq.write_table(matrix_table(matrix, names_a, names_b, **meta), buf)
    storage.atomic_write_bytes(url, buf.getvalue())


def read_matrix(url: str) -> tuple[np.ndarray, list[str], list[str], dict[str, Any]]:
    """Read a table written by :func:`write_matrix`: ``(matrix, names_a, names_b, metadata)``."""
    from layerlab import storage

    table = pq.read_table(io.BytesIO(storage.read_bytes(url)))
    raw = (table.schema.metadata or {}).get(b"layerlab.cka")
    if raw is None:
        raise ValueError(f"{url}: not a layerlab CKA table (no layerlab.cka schema metadata)")
    meta = json.loads(raw)
    names_a, names_b = meta.pop("names_a"), meta.pop("names_b")
    matrix = np.full((len(names_a), len(names_b)), np.nan)
    values = table.column("value" if "value" in table.column_names else "cka").to_numpy(zero_copy_only=False)
    matrix[table.column("index_a").to_numpy(), table.column("index_b").to_numpy()] = np.asarray(values, dtype=np.float64)
    return matrix, names_a, names_b, meta


def write_replicates(url: str, replicates: np.ndarray, names_a: Sequence[str], names_b: Sequence[str], groups: Sequence[str],
                     **meta: Any) -> None:
    """Write leave-one-group-out CKA values (``replicates[g, i, j]``) as ``layer_a, layer_b, group, value`` rows."""
    from layerlab import storage

    reps = np.asarray(replicates, dtype=np.float64)
    if reps.shape != (len(groups), len(names_a), len(names_b)):
        raise ValueError(f"replicates: shape {reps.shape} does not match {len(groups)} groups x {len(names_a)} x {len(names_b)} layers")
    g, ia, ib = np.meshgrid(np.arange(len(groups)), np.arange(len(names_a)), np.arange(len(names_b)), indexing="ij")
    table = pa.table({
        "layer_a": [str(names_a[i]) for i in ia.ravel()],
        "layer_b": [str(names_b[j]) for j in ib.ravel()],
        "group": [str(groups[k]) for k in g.ravel()],
        "value": _floats(reps),
    })
    table = table.replace_schema_metadata({b"layerlab.cka_replicates": json.dumps({"groups": list(map(str, groups)), **meta}, default=str).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.atomic_write_bytes(url, buf.getvalue())


def read_replicates(url: str) -> dict[tuple[str, str], dict[str, float]]:
    """Replicates written by :func:`write_replicates`: ``{(layer_a, layer_b): {group: value}}``."""
    from layerlab import storage

    table = pq.read_table(io.BytesIO(storage.read_bytes(url))).to_pydict()
    out: dict[tuple[str, str], dict[str, float]] = {}
    for a, b, g, v in zip(table["layer_a"], table["layer_b"], table["group"], table["value"]):
        out.setdefault((a, b), {})[g] = float(v)
    return out

"""A dataset's rows without audio as a pandas DataFrame (id index; speaker, num_samples, labels, splits, transcript, alignment).

One reader for everyone who needs labels, splits and lengths but no audio: the cache reader's label join,
and the study's plan and cost model, which resolve probe splits and CKA samples before anything is extracted.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from layerlab import artifacts

ROW_COLUMNS = ("id", "speaker", "num_samples", "labels", "splits", "transcript", "alignment")


def rows_frame(rows: list[dict[str, Any]]) -> Any:
    """Row dicts (as Parquet gives them) -> the DataFrame probes and samples read."""
    import pandas as pd

    return pd.DataFrame(
        {
            "speaker": [r.get("speaker") or "" for r in rows],
            "num_samples": np.array([int(r.get("num_samples") or 0) for r in rows], dtype=np.int64),
            "labels": [dict(r.get("labels") or []) for r in rows],
            "splits": [dict(r.get("splits") or []) for r in rows],
            "transcript": [r.get("transcript") for r in rows],
            "alignment": [[(a["phone"], int(a["start"]), int(a["end"])) for a in r["alignment"]] if r.get("alignment") is not None else None
                          for r in rows],
        },
        index=pd.Index([str(r["id"]) for r in rows], name="id"),
    )


def read_rows(root: str, manifest: Any = None, shards: Collection[str] | None = None, ids: Collection[str] | None = None,
              verify: bool = True, with_shard: bool = False) -> Any:
    """The dataset's rows (only ``shards`` / ``ids`` when given) as :func:`rows_frame`; each shard file verified unless ``verify`` is off.

    ``with_shard``: add a ``shard`` column naming each row's shard (which files a sample touches).
    """
    from layerlab.data.manifest import read_manifest
    from layerlab.data.shards import SHARD_SCHEMA

    manifest = manifest or read_manifest(root)
    names: list[str] = []
    wanted = None if ids is None else pa.array(sorted(set(ids)), pa.string())
    tables = []
    for entry in manifest.shards:
        if shards is not None and entry.name not in shards:
            continue
        with artifacts.open_verified(root, entry, verify) as f:
            pf = pq.ParquetFile(f)
            table = pf.read(columns=[c for c in ROW_COLUMNS if c in pf.schema_arrow.names])
        if wanted is not None:
            table = table.filter(pc.is_in(table.column("id"), wanted))
        if with_shard:
            names.extend([entry.name] * table.num_rows)
        tables.append(table)
    schema = pa.schema([SHARD_SCHEMA.field(c) for c in ROW_COLUMNS])
    table = (pa.concat_tables([t.select([c for c in ROW_COLUMNS if c in t.column_names]) for t in tables], promote_options="default")
             if tables else schema.empty_table())
    frame = rows_frame(table.to_pylist())
    if with_shard:
        frame["shard"] = names
    return frame

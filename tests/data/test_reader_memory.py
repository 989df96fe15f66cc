"""The shard reader streams: its peak memory does not grow with the number of shards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from layerlab import storage
from layerlab.data.audio import encode_flac
from layerlab.data.manifest import AudioManifest, FileEntry, write_manifest
from layerlab.data.shards import SHARD_SCHEMA

ROWS_PER_SHARD = 24
SECONDS = 6.0


def _build(root: Path, n_shards: int, flac: bytes) -> None:
    """Write ``n_shards`` full-size shards of noise (incompressible FLAC) plus a manifest."""
    entries = []
    for s in range(n_shards):
        rows = [
            {"id": f"s{s}-u{i}", "audio": flac, "sample_rate": 16000, "num_samples": int(SECONDS * 16000),
             "speaker": f"spk{i % 4}", "source": "noise", "orig_sample_rate": 16000, "orig_channels": 1,
             "gain": 1.0, "labels": [("sid", f"spk{i % 4}")], "splits": [], "transcript": None, "alignment": None}
            for i in range(ROWS_PER_SHARD)
        ]
        name = f"shards/shard-{s:05d}.parquet"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=SHARD_SCHEMA), path, row_group_size=8, use_dictionary=False)
        entries.append(FileEntry(name=name, rows=ROWS_PER_SHARD, bytes=path.stat().st_size,
                                 sha256=storage.sha256_file(path), audio_seconds=SECONDS * ROWS_PER_SHARD))
    write_manifest(str(root), AudioManifest(dataset="mem", shards=entries, kept=n_shards * ROWS_PER_SHARD))


_READER = r"""
import json, resource, sys
import numpy as np
from layerlab.data.shards import iter_utterances
total = 0.0
n = 0
for u in iter_utterances(sys.argv[1], batch_rows=8):
    total += float(np.abs(u.wav).sum())
    n += 1
print(json.dumps({"rows": n, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _peak(root: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _READER, str(root)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_reader_peak_memory_independent_of_shard_count(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    flac = encode_flac((0.3 * rng.standard_normal(int(SECONDS * 16000))).astype(np.float32))
    small, large = tmp_path / "small", tmp_path / "large"
    _build(small, 2, flac)
    _build(large, 40, flac)
    large_bytes = sum(p.stat().st_size for p in large.rglob("*.parquet"))
    assert large_bytes > 100e6, "the large corpus must dwarf the reader's working set"
    p_small, p_large = _peak(small), _peak(large)
    assert p_small["rows"] == 2 * ROWS_PER_SHARD and p_large["rows"] == 40 * ROWS_PER_SHARD
    # 20x the data (>100 MB more) may not cost more than a few MB of extra peak memory
    assert p_large["peak_rss_mb"] - p_small["peak_rss_mb"] < 25, (p_small, p_large, large_bytes / 1e6)

"""Frames-tier encoding: raw fp16 bytes per utterance and layer (cache format 2) vs Parquet list<float16> (format 1).

Writes and reads the same WavLM-Base-shaped row group (768-dim frames, utterances of 1-8 s at 50 Hz)
both ways in this process, for each compression, and prints MB/s and the ratio format 2 ÷ format 1
(best of ``--reps``; the reads decode to one fp16 array per utterance, as the cache reader does).
Parquet encodes a list<float16> value by value; the bytes go through as one buffer per row group.
Run:  .venv/bin/python benchmarks/frames_format.py --mb 64 --reps 5
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from layerlab.cache.reader import _frames_values, _split_rows
from layerlab.cache.writer import _binary_array, _list_array


def frames(mb: float, dim: int, seed: int = 0) -> list[np.ndarray]:
    """fp16 frames [T, dim] of utterances of 1-8 s at 50 Hz, about ``mb`` MB in all (activation-like: a few large channels)."""
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.normal(0, 1, dim)).astype(np.float32)
    out, total = [], 0
    while total < mb * 1e6:
        f = (rng.standard_normal((int(rng.integers(50, 400)), dim)).astype(np.float32) * scale).astype(np.float16)
        out.append(f)
        total += f.nbytes
    return out


def best_seconds(fn, reps: int) -> tuple[float, object]:
    """The fastest of ``reps`` calls and the last result."""
    best, out = float("inf"), None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=64.0, help="fp16 bytes in the row group")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    parts = frames(args.mb, args.dim)
    raw = sum(p.nbytes for p in parts) / 1e6
    print(f"{len(parts)} utterances, {raw:.1f} MB of fp16 frames (dim {args.dim}); best of {args.reps}")
    encodings = {"format 1 list<float16>": lambda p: _list_array(p, pa.float16()), "format 2 fp16 bytes": _binary_array}
    for compression in ("none", "lz4", "zstd"):
        speed: dict[str, tuple[float, float]] = {}
        for label, column in encodings.items():
            def write(column=column) -> bytes:
                buf = io.BytesIO()
                pq.write_table(pa.table({"x": column(parts)}), buf, compression=None if compression == "none" else compression)
                return buf.getvalue()

            t_write, data = best_seconds(write, args.reps)

            def read(data=data) -> list[np.ndarray]:
                col = pq.read_table(io.BytesIO(data)).column("x").combine_chunks()
                return _split_rows(*_frames_values(col), args.dim)

            t_read, back = best_seconds(read, args.reps)
            assert all(np.array_equal(a, b) for a, b in zip(back, parts)), f"{label}: round trip changed values"
            speed[label] = (raw / t_write, raw / t_read)
            print(f"  {compression:4s} {label}: write {raw / t_write:7.0f} MB/s, read {raw / t_read:7.0f} MB/s, "
                  f"file {len(data) / 1e6 / raw:.3f} of raw")
        (w1, r1), (w2, r2) = speed.values()
        print(f"  {compression:4s} format 2 ÷ format 1: write {w2 / w1:.2f}x, read {r2 / r1:.2f}x")


if __name__ == "__main__":
    main()

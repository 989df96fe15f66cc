"""What the second-moment similarity measures add to the CKA pass: the ratio (CKA pass + measures) / (CKA pass).

Run: ``.venv/bin/python benchmarks/measures.py [--quick] [--layers 13 --dim 768 --frames-per-shard 3000 --shards 64]``.

The CKA pass is measured here: ``--measured-shards`` shards of ``--frames-per-shard`` transformer-like
frames (benchmarks/cka.py's generator) go through FeatureCKA.update in 1024-frame batches, one state
per group (5 groups, the cross-validation units of ridge_r2), merged at the end, as the pipeline does.
Its throughput times the configured cache (``--shards`` x ``--frames-per-shard`` frames) is the pass
time; reading the cache (Parquet, fp16 decode) is left out, which only makes the ratio look worse.
The measures (linear_cka, cca_r2, cca_mean, svcca, pwcca, procrustes for every layer pair, then
ridge_r2 in both directions with 5 folds) run once on the merged state, on the same device, and are
timed separately. Printed: both times, the ratio for the configured cache, and the cache size above
which the measures add at most 10 %. Nothing is asserted (CI never runs benchmarks).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cka import real_shaped_layers  # noqa: E402

from layerlab.accumulator import merge_all  # noqa: E402
from layerlab.cka import FeatureCKA  # noqa: E402
from layerlab.cka.measure_registry import MeasureOptions  # noqa: E402
from layerlab.cka.measure_run import compute_measures  # noqa: E402
from layerlab.cka.state_io import accumulator_from_state  # noqa: E402
from layerlab.cka.tensors import pick_device  # noqa: E402

FROM_STATE = ["linear_cka", "cca_r2", "cca_mean", "svcca", "pwcca", "procrustes"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=13)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--frames-per-shard", type=int, default=3000)
    ap.add_argument("--shards", type=int, default=64, help="shards of the cache the ratio is reported for")
    ap.add_argument("--measured-shards", type=int, default=2, help="shards actually accumulated to measure the pass's throughput")
    ap.add_argument("--groups", type=int, default=5)
    ap.add_argument("--device", default=None)
    ap.add_argument("--quick", action="store_true", help="13 x 128, 1 measured shard of 2000 frames (a smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.dim, args.frames_per_shard, args.measured_shards = 128, 2000, 1
    device = pick_device(args.device)
    dims = [args.dim] * args.layers
    shift = torch.cat([x[:256].double().mean(0) for x in real_shaped_layers(args.layers, args.dim, 256, seed=99)])
    print(f"device {device}, {args.layers} layers x {args.dim}, torch threads {torch.get_num_threads()}")

    groups = [FeatureCKA(dims, shift=shift, device=device) for _ in range(args.groups)]
    frames = 0
    seconds = 0.0
    for shard in range(args.measured_shards):
        data = [x.to(device) for x in real_shaped_layers(args.layers, args.dim, args.frames_per_shard, seed=shard)]
        _sync(device)
        t0 = time.perf_counter()
        for k, start in enumerate(range(0, args.frames_per_shard, 1024)):
            groups[k % args.groups].update([x[start : start + 1024] for x in data])
        _sync(device)
        seconds += time.perf_counter() - t0
        frames += args.frames_per_shard
    t0 = time.perf_counter()
    merged = merge_all([accumulator_from_state(g.state_dict(), device=device) for g in groups])
    _sync(device)
    merge_s = time.perf_counter() - t0
    rate = frames / seconds
    total_frames = args.shards * args.frames_per_shard
    pass_s = total_frames / rate + merge_s
    print(f"CKA pass: {rate:,.0f} frames/s accumulating ({frames} frames measured), merge {merge_s:.2f} s; "
          f"a cache of {args.shards} shards x {args.frames_per_shard} = {total_frames:,} frames: {pass_s:,.1f} s")

    opts = MeasureOptions()
    t0 = time.perf_counter()
    compute_measures(merged, FROM_STATE, opts, "biased")
    _sync(device)
    state_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compute_measures(merged, ["ridge_r2"], opts, "biased", groups=groups)
    _sync(device)
    ridge_s = time.perf_counter() - t0
    pairs = args.layers * (args.layers + 1) // 2
    print(f"measures: {', '.join(FROM_STATE)} for {pairs} layer pairs: {state_s:,.1f} s; ridge_r2 both directions, "
          f"{min(opts.ridge_folds, args.groups)} folds: {ridge_s:,.1f} s")
    for label, extra in (("all second-moment measures", state_s + ridge_s), ("without ridge_r2", state_s)):
        ratio = (pass_s + extra) / pass_s
        break_even = int(np.ceil(extra / 0.10 * rate))
        print(f"ratio (CKA pass + {label}) / (CKA pass) = {ratio:.3f} for {total_frames:,} frames; <= 1.10 from "
              f"{break_even:,} frames ({break_even / args.frames_per_shard:,.0f} shards of {args.frames_per_shard})")


if __name__ == "__main__":
    main()

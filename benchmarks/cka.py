"""CKA engine throughput: layerlab all-pairs accumulation vs per-pair baselines vs this machine's DGEMM rate.

Run: ``.venv/bin/python benchmarks/cka.py [--quick]``. Prints, for WavLM-Base-shaped (13 x 768) and
Large-shaped (25 x 1024) activations, frames/s of
  * layerlab ``FeatureCKA`` (float64 accumulation, all layer pairs, block-row GEMMs),
  * a per-pair Gram-space linear CKA in float32 (what public CKA libraries do: Grams per pair),
  * a per-pair feature-space linear CKA in float64 (the textbook formula, recomputed per pair),
  * the "physical limit": float64 GEMM FLOP/s measured in this run / (D^2 FLOP per frame, a SYRK),
and the accumulator memory after 1 and after k batches (independent of n). All ratios are
against baselines measured in this same process; nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layerlab.cka import FeatureCKA  # noqa: E402
from layerlab.cka.feature_stats import FAST_MATMUL_ABS_ERROR  # noqa: E402
from layerlab.cka.tensors import pick_device  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def gemm_rate(device: torch.device, size: int = 2048, reps: int = 3) -> float:
    """Best float64 GEMM FLOP/s over a few square multiplies (the machine's practical limit)."""
    a = torch.randn(size, size, dtype=torch.float64, device=device)
    b = torch.randn(size, size, dtype=torch.float64, device=device)
    a @ b
    best = 0.0
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = max(best, 2.0 * size**3 / (time.perf_counter() - t0))
    return best


def gram_cka_pair(x: torch.Tensor, y: torch.Tensor) -> float:
    """Per-pair Gram-space linear CKA in float32, the common public-library implementation."""
    k = x @ x.T
    l = y @ y.T

    def centre(g: torch.Tensor) -> torch.Tensor:
        return g - g.mean(0, keepdim=True) - g.mean(1, keepdim=True) + g.mean()

    kc, lc = centre(k), centre(l)
    return float((kc * lc).sum() / (kc.norm() * lc.norm()))


def feature_cka_pair(x: torch.Tensor, y: torch.Tensor) -> float:
    """Per-pair feature-space linear CKA in float64 (textbook formula, self terms recomputed per pair)."""
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    return float((x.T @ y).square().sum() / ((x.T @ x).norm() * (y.T @ y).norm()))


def time_pairs(fn, layers: list[torch.Tensor], pairs: int, device: torch.device) -> float:
    """Seconds per layer pair of ``fn`` (averaged over ``pairs`` pairs)."""
    num = len(layers)
    fn(layers[0], layers[1])
    _sync(device)
    t0 = time.perf_counter()
    for p in range(pairs):
        fn(layers[p % num], layers[(p * 7 + 3) % num])
    _sync(device)
    return (time.perf_counter() - t0) / pairs


def time_accumulator(acc: FeatureCKA, data: list[torch.Tensor], batches: int, device: torch.device) -> float:
    """Frames/s of ``acc.update`` over ``batches`` batches (after one warm-up batch)."""
    acc.update(data)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(batches):
        acc.update(data)
    _sync(device)
    return batches * data[0].shape[0] / (time.perf_counter() - t0)


def real_shaped_layers(num_layers: int, dim: int, frames: int, seed: int = 0) -> list[torch.Tensor]:
    """Transformer-like activations: each layer a residual update of the last, anisotropic, with a few outlier dims."""
    gen = torch.Generator().manual_seed(seed)
    scales = torch.exp(torch.randn(dim, generator=gen))  # anisotropic spectrum
    x = torch.randn(frames, dim, generator=gen) * scales
    offset = torch.zeros(dim)
    offset[torch.randperm(dim, generator=gen)[:4]] = 60.0  # massive activations in a few channels, as in real models
    layers = []
    for _ in range(num_layers):
        mix = torch.randn(dim, dim, generator=gen) / dim**0.5
        x = x + 0.5 * torch.tanh(x @ mix) + 0.1 * torch.randn(frames, dim, generator=gen)
        layers.append((x + offset).float())
    return layers


def fast_mode_error(num_layers: int, dim: int, frames: int, device: torch.device) -> None:
    """Max |CKA - CKA_float64| of the fast modes (fp32/TF32 GEMMs; bf16 autocast GEMMs) on the same real-shaped data."""
    layers = [x.to(device) for x in real_shaped_layers(num_layers, dim, frames)]
    chunk = 1024

    def run(fast: bool, bf16: bool) -> dict[str, object]:
        acc = FeatureCKA([dim] * num_layers, device=device, fast_matmul=fast)
        ctx = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else torch.autocast(device_type=device.type, enabled=False)
        with ctx:
            for i in range(0, frames, chunk):
                acc.update([x[i : i + chunk] for x in layers])
        return {e: acc.using(e).compute() for e in ("biased", "debiased")}

    ref = run(False, False)
    tf32 = "TF32" if device.type == "cuda" else "float32 (TF32 on CUDA)"
    for label, out in ((f"fast_matmul {tf32} GEMMs", run(True, False)), ("fast_matmul + bf16 autocast GEMMs", run(True, True))):
        errs = ", ".join(f"{e} {float(abs(out[e] - ref[e]).max()):.2e}" for e in ref)
        print(f"  {label}: max |CKA - CKA_float64| over {num_layers}x{num_layers} pairs, {frames} frames: {errs}")


def bench_shape(name: str, num_layers: int, dim: int, batch: int, batches: int, baseline_ns: list[int], pairs: int, limit: float, device: torch.device) -> None:
    width = num_layers * dim
    all_pairs = num_layers * num_layers
    gen = torch.Generator().manual_seed(0)
    data = [torch.randn(batch, dim, generator=gen) + 3.0 for _ in range(num_layers)]
    print(f"\n== {name}: {num_layers} layers x {dim} dims (D = {width}), device {device}")
    acc = FeatureCKA([dim] * num_layers, device=device)
    limit = max(limit, gemm_rate(device))  # re-measured next to our run: shared machines fluctuate
    ours = time_accumulator(acc, data, batches, device)
    limit = max(limit, gemm_rate(device))
    mem_one_batch = acc.state_bytes()
    acc.update(data)
    mem_more = acc.state_bytes()
    t0 = time.perf_counter()
    acc.using("debiased").compute()
    compute_s = time.perf_counter() - t0
    del acc
    fast = time_accumulator(FeatureCKA([dim] * num_layers, device=device, fast_matmul=True), data, batches, device)
    limit_fps = limit / width**2
    print(f"layerlab FeatureCKA float64, all {all_pairs} pairs, batch {batch}:     {ours:9.1f} frames/s")
    print(f"layerlab FeatureCKA fast_matmul (fp32/TF32 GEMM, fp64 sums):   {fast:9.1f} frames/s")
    print(f"float64 GEMM limit ({limit / 1e9:.1f} GFLOP/s / D^2 FLOP per frame):   {limit_fps:9.1f} frames/s -> float64 layerlab at {100 * ours / limit_fps:.0f}%")
    for n in baseline_ns:
        base = [torch.randn(n, dim, generator=gen).to(device) for _ in range(num_layers)]
        gram_fps = n / (time_pairs(gram_cka_pair, base, pairs, device) * all_pairs)
        print(f"per-pair Gram-space float32 baseline, n = {n:5d} frames:       {gram_fps:9.1f} frames/s -> layerlab x{ours / gram_fps:.1f} (fast x{fast / gram_fps:.1f})")
        del base
    base = [torch.randn(baseline_ns[0], dim, generator=gen).to(device) for _ in range(num_layers)]
    feat_fps = baseline_ns[0] / (time_pairs(feature_cka_pair, base, pairs, device) * all_pairs)
    print(f"per-pair feature-space float64 baseline:                       {feat_fps:9.1f} frames/s -> layerlab x{ours / feat_fps:.1f} (fast x{fast / feat_fps:.1f})")
    print(f"accumulator memory: {mem_one_batch / 2**20:.1f} MiB after {(batches + 1) * batch} frames, "
          f"{mem_more / 2**20:.1f} MiB after {(batches + 2) * batch} frames (independent of n); compute() {compute_s:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller batches (a smoke run, noisier numbers)")
    args = parser.parse_args()
    device = pick_device()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}")
    limit = gemm_rate(device)
    print(f"measured float64 GEMM rate: {limit / 1e9:.1f} GFLOP/s")
    scale = 4 if args.quick else 1
    bench_shape("WavLM-Base-shaped", 13, 768, 2048 // scale, 2, [2048, 8192 // scale], 3, limit, device)
    bench_shape("WavLM-Large-shaped", 25, 1024, 1024 // scale, 2, [2048, 8192 // scale], 2, limit, device)
    print(f"\n== fast-mode error vs float64 on real-shaped activations (residual stream, anisotropic, outlier channels), device {device}")
    print(f"  documented bound FAST_MATMUL_ABS_ERROR = {FAST_MATMUL_ABS_ERROR:g} (fp32/TF32); bf16 is not a supported mode, shown for comparison")
    fast_mode_error(13, 768, 8192 // scale, device)
    fast_mode_error(25, 1024, 4096 // scale, device)


if __name__ == "__main__":
    main()

"""Extraction throughput: the Ray pipeline vs a bare ``for batch: model(batch)`` loop, same data and model.

Prints, from one process: pipeline throughput / bare-loop throughput (end to end, and per actor busy
time; per-repetition, median and best-of, since
shared machines are noisy), cache bytes per audio second for each tier, and peak memory (driver and actor).

Default: a WavLM-Base-sized model (random weights, s3prl format), where model compute dominates as it
does for every real speech model; ``--size tiny`` instead measures the fixed per-utterance overheads
(decode, Parquet, Ray) against a model that runs at ~800x real time.
Run:  .venv/bin/python benchmarks/extract.py --minutes 3 --size base --reps 1
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def build_corpus(root: str, minutes: float, seed: int = 0) -> None:
    """Speech-like synthetic utterances of 1-8 s, in shards of about 4 MB."""
    from layerlab.data.records import AudioRecord
    from layerlab.data.shards import ShardWriter

    rng = np.random.default_rng(seed)
    total, i = 0.0, 0
    with ShardWriter(root, "bench", max_shard_bytes=4 * 2**20) as w:
        while total < minutes * 60:
            sec = float(rng.uniform(1.0, 8.0))
            t = np.arange(int(sec * 16000)) / 16000
            f0 = 90 + 60 * rng.random()
            phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / 16000
            wav = (sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2 + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
            w.add(AudioRecord(id=f"u{i:05d}", audio=wav, sample_rate=16000, speaker=f"s{i % 7}", source="bench"))
            total += sec
            i += 1


def bare_loop(model, wavs: list[np.ndarray], mode: str, batch_seconds: float) -> float:
    """Seconds of ``model(batch)`` over pre-decoded utterances with the pipeline's batch plan."""
    from layerlab.batching import plan_batches
    from layerlab.models.batching import pad_batch

    batches = plan_batches([w.shape[0] for w in wavs], mode, 64, int(batch_seconds * 16000))
    t0 = time.perf_counter()
    for b in batches:
        model(*pad_batch([wavs[i] for i in b]))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--size", choices=["tiny", "base"], default="base")
    ap.add_argument("--mode", default="bucketed")
    ap.add_argument("--batch-seconds", type=float, default=40.0)
    ap.add_argument("--reps", type=int, default=1)
    args = ap.parse_args()

    import ray

    from layerlab.extract import ExtractConfig
    from layerlab.extract.pipeline import extract
    from layerlab.models import tiny
    from layerlab.models.batching import pad_batch

    work = Path(tempfile.mkdtemp(prefix="layerlab-bench-"))
    build_corpus(str(work / "data"), args.minutes)
    spec = f"s3prl:wavlm_local:{tiny.build_s3prl_wavlm(work / 'wavlm.pt', size=args.size)}"
    from layerlab.data.shards import iter_utterances
    from layerlab.models import load

    model = load(spec)
    wavs = [u.wav for u in iter_utterances(str(work / "data"))]
    audio_s = sum(w.shape[0] for w in wavs) / 16000
    model(*pad_batch(wavs[:1]))  # warm-up, as the pipeline's actors warm up in __init__
    print(f"model: WavLM {args.size} (s3prl format, random weights), audio: {audio_s / 60:.2f} min, mode {args.mode}, "
          f"batch {args.batch_seconds:g} s, torch threads {torch.get_num_threads()}, {args.reps} interleaved repetitions")
    ray.init(include_dashboard=False, log_to_driver=False)
    ratios: dict[str, list[tuple[float, float]]] = {"pooled": [], "both": []}
    last = {}
    best = {t: (0.0, 0.0, 0.0) for t in ratios}  # best-of throughputs: bare, pipeline end to end, pipeline busy
    for rep in range(args.reps):
        for tier in ("pooled", "both"):
            bare_tp = audio_s / bare_loop(model, wavs, args.mode, args.batch_seconds)
            cfg = ExtractConfig(tier=tier, mode=args.mode, batch_seconds=args.batch_seconds, progress=False, overwrite=True)
            s = extract(spec, str(work / "data"), str(work / f"cache-{tier}"), cfg)
            assert s.ok and s.complete, s.render()
            ratios[tier].append((s.audio_seconds / s.wall_seconds / bare_tp, s.audio_seconds / s.shard_seconds / bare_tp))
            best[tier] = (max(best[tier][0], bare_tp), max(best[tier][1], s.audio_seconds / s.wall_seconds), max(best[tier][2], s.audio_seconds / s.shard_seconds))
            print(f"rep {rep} tier={tier}: bare {bare_tp:.1f} audio-s/s; pipeline {s.wall_seconds:.2f} s end to end "
                  f"(incl. actor start + model load), {s.shard_seconds:.2f} s actor busy -> ratios {ratios[tier][-1][0]:.3f} / {ratios[tier][-1][1]:.3f}")
            last[tier] = s
    for tier, rs in ratios.items():
        s = last[tier]
        e2e, busy = np.median([r[0] for r in rs]), np.median([r[1] for r in rs])
        print(f"tier={tier}: median throughput ratio pipeline/bare: end-to-end {e2e:.3f}, steady-state (actor busy) {busy:.3f}")
        b = best[tier]
        print(f"  best-of-{args.reps} (robust to a busy machine): end-to-end {b[1] / b[0]:.3f}, steady-state {b[2] / b[0]:.3f}")
        for t, size in s.tier_bytes.items():
            print(f"  {t} tier: {size / 1e6:.2f} MB = {size / s.audio_seconds:,.0f} bytes per audio second")
        print(f"  actor peak RSS {s.actor_peak_rss_mb:.0f} MB")
    print(f"driver peak RSS (incl. bare loop model + decoded audio) {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    ray.shutdown()


if __name__ == "__main__":
    main()

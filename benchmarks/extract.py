"""Extraction throughput: the Ray pipeline vs a bare ``for batch: model(batch)`` loop, same data and model.

Prints, from one process, with every measurement interleaved over ``--reps`` repetitions (medians;
shared machines are noisy):
  * pipeline throughput / bare-loop throughput for the pooled tier and for both tiers, end to end
    (incl. actor start and model load) and steady state (actor busy time per shard);
  * the same for the frames tier with the write-behind thread off (``write_behind: false``);
  * an in-process A/B of the tiers (no Ray, one process, so the 20-40 % run-to-run spread of separate
    worker processes on a shared machine cancels): each variant's wall per pass relative to the pooled
    tier's, the model's share of that wall, and where the time goes (model, fp16 conversion and
    per-utterance split, Parquet encoding, publish) with and without write-behind;
  * joint extraction (GE2E + FBANK + a tiny WavLM, one actor, decode once) throughput / the throughput
    of the three single-model extractions run one after the other (> 1: decoding once pays);
  * cache bytes per audio second per tier, and peak memory (driver and actor).

Default: a WavLM-Base-sized model (random weights, s3prl format), where model compute dominates as it
does for every real speech model; ``--size tiny`` instead measures the fixed per-utterance overheads
(decode, Parquet, Ray) against a model that runs at ~800x real time. A GPU is used when present.
Run:  .venv/bin/python benchmarks/extract.py --minutes 4 --size base --reps 3
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def build_corpus(root: str, minutes: float, seed: int = 0, shard_mb: float = 4.0) -> None:
    """Speech-like synthetic utterances of 1-8 s, in shards of about ``shard_mb`` MB (4 MB: ~2 min of audio)."""
    from layerlab.data.records import AudioRecord
    from layerlab.data.shards import ShardWriter

    rng = np.random.default_rng(seed)
    total, i = 0.0, 0
    with ShardWriter(root, "bench", max_shard_bytes=int(shard_mb * 2**20)) as w:
        while total < minutes * 60:
            sec = float(rng.uniform(1.0, 8.0))
            t = np.arange(int(sec * 16000)) / 16000
            f0 = 90 + 60 * rng.random()
            phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / 16000
            wav = (sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2 + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
            w.add(AudioRecord(id=f"u{i:05d}", audio=wav, sample_rate=16000, speaker=f"s{i % 7}", source="bench"))
            total += sec
            i += 1


def bare_loop(spec: str, data: str, mode: str, batch_seconds: float, threads: int) -> tuple[float, float]:
    """Seconds of ``model(batch)`` over pre-decoded utterances with the pipeline's batch plan (per shard, as the actors batch).

    Runs inside a Ray task with the actor's CPUs and torch threads, so baseline and pipeline share
    process conditions; model load and decoding are outside the timed loop.
    """
    from layerlab import storage
    from layerlab.batching import plan_batches
    from layerlab.data.manifest import read_manifest
    from layerlab.data.shards import iter_shard_batches, rows_to_utterances
    from layerlab.models import load
    from layerlab.models.batching import pad_batch

    torch.set_num_threads(threads)
    model = load(spec)
    shards = [[u.wav for b in iter_shard_batches(storage.join(data, sh.name)) for u in rows_to_utterances(b)] for sh in read_manifest(data).shards]
    batches = [[wavs[i] for i in b] for wavs in shards for b in plan_batches([w.shape[0] for w in wavs], mode, 64, int(batch_seconds * 16000))]
    model(*pad_batch(batches[0][:1]))  # warm-up, as the actors warm up in __init__
    t0, cpu0 = time.perf_counter(), time.process_time()
    for b in batches:
        model(*pad_batch(b))
    return time.perf_counter() - t0, time.process_time() - cpu0


def profile_shards(spec: str, data: str, out: str, tier: str = "both", **opts: object) -> dict[str, float]:
    """Seconds per step of extracting every shard in this process (no Ray), from the worker's timers."""
    from layerlab import storage
    from layerlab.data.manifest import read_manifest
    from layerlab.extract import ExtractConfig
    from layerlab.extract.shard_worker import ShardExtractor
    from layerlab.models import load

    cfg = ExtractConfig(tier=tier, mode="bucketed", progress=False, overwrite=True, **opts)
    worker = ShardExtractor(load(spec), cfg, "bucketed")
    totals: dict[str, float] = {}
    t0, cpu0 = time.perf_counter(), time.process_time()
    for sh in read_manifest(data).shards:
        o = worker.run(storage.join(data, sh.name), sh.name, sh.sha256, out, {})
        totals["model"] = totals.get("model", 0.0) + o.model_seconds
        for k, v in o.stats.items():
            totals[k] = totals.get(k, 0.0) + v
    return {"wall": time.perf_counter() - t0, "process CPU": time.process_time() - cpu0, **totals}


PROFILE_VARIANTS = {  # label -> (tier, options); interleaved in one process, so cross-process noise cancels
    "pooled tier": ("pooled", {}),
    "both tiers, write-behind": ("both", {"write_behind": True}),
    "both tiers, writes on the model thread (before)": ("both", {"write_behind": False}),
    "both tiers, write-behind, lz4": ("both", {"write_behind": True, "compression": "lz4"}),
}


def profile_ab(spec: str, data: str, work: Path, reps: int) -> None:
    """In-process A/B of the tiers: median wall per pass, its ratio to the pooled tier's, and the model's share of it."""
    walls: dict[str, list[float]] = {k: [] for k in PROFILE_VARIANTS}
    shares: dict[str, list[float]] = {k: [] for k in PROFILE_VARIANTS}
    last: dict[str, dict[str, float]] = {}
    for rep in range(reps):
        for label, (tier, opts) in PROFILE_VARIANTS.items():
            prof = profile_shards(spec, data, str(work / f"profile-{rep}-{len(label)}"), tier=tier, **opts)
            walls[label].append(prof["wall"])
            shares[label].append(prof["model"] / prof["wall"])
            last[label] = prof
    pooled = float(np.median(walls["pooled tier"]))
    for label in PROFILE_VARIANTS:
        wall = float(np.median(walls[label]))
        print(f"  {label}: median wall {wall:.2f} s (reps {', '.join(f'{w:.2f}' for w in walls[label])}); pooled-tier wall / this "
              f"{pooled / wall:.3f}; model share of wall {np.median(shares[label]):.3f}")
        print("    last rep: " + ", ".join(f"{k} {v:.2f}" for k, v in last[label].items() if not k.startswith("t_")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--size", choices=["tiny", "base"], default="base")
    ap.add_argument("--mode", default="bucketed")
    ap.add_argument("--batch-seconds", type=float, default=40.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--shard-mb", type=float, default=4.0, help="audio shard size (smaller: more shard boundaries per minute)")
    ap.add_argument("--skip-joint", action="store_true", help="leave out the joint-extraction comparison")
    ap.add_argument("--joint-only", action="store_true", help="only the joint-extraction comparison")
    ap.add_argument("--skip-profile", action="store_true", help="leave out the in-process profile of the frames tier")
    args = ap.parse_args()

    import ray

    from layerlab.extract import ExtractConfig
    from layerlab.extract.joint import extract_joint
    from layerlab.extract.pipeline import extract
    from layerlab.models import tiny

    work = Path(tempfile.mkdtemp(prefix="layerlab-bench-"))
    build_corpus(str(work / "data"), args.minutes, shard_mb=args.shard_mb)
    spec = f"s3prl:wavlm_local:{tiny.build_s3prl_wavlm(work / 'wavlm.pt', size=args.size)}"
    from layerlab.data.manifest import read_manifest

    manifest = read_manifest(str(work / "data"))
    audio_s = manifest.audio_seconds
    cpu0 = time.process_time()
    print(f"model: WavLM {args.size} (s3prl format, random weights), audio: {audio_s / 60:.2f} min in {len(manifest.shards)} shards, "
          f"mode {args.mode}, batch {args.batch_seconds:g} s, device {'cuda' if torch.cuda.is_available() else 'cpu'}, "
          f"{args.reps} interleaved repetitions; the bare loop runs in a Ray task with the actor's CPUs and threads")
    if not args.skip_profile:
        print(f"\nin-process steady state, no Ray ({args.reps} interleaved repetitions, the model's thread and the writer in one process):")
        profile_ab(spec, str(work / "data"), work, args.reps)
    ray.init(address="local", include_dashboard=False, log_to_driver=False)  # its own embedded Ray, never a head left running
    from layerlab.extract.resources import plan_resources

    res = plan_resources(ray.cluster_resources(), ExtractConfig(), {})
    bare = ray.remote(num_cpus=res.num_cpus, num_gpus=res.num_gpus)(bare_loop)
    variants = {"pooled": dict(tier="pooled"), "both": dict(tier="both"),
                "both, one shard at a time, writes on the model thread (before)": dict(tier="both", write_behind=False, tasks_per_actor=1)}
    if args.joint_only:
        variants = {}
    ratios: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in variants}
    joint_ratio: list[float] = []
    last = {}
    tiny_spec = f"s3prl:wavlm_local:{tiny.build_s3prl_wavlm(work / 'wavlm-tiny.pt', size='tiny')}"
    group = ["ge2e", "fbank", f"wavlm={tiny_spec}"]  # light models: decoding once is what joint extraction saves
    for rep in range(args.reps):
        for name, opts in variants.items():
            bare_wall, bare_cpu = ray.get(bare.remote(spec, str(work / "data"), args.mode, args.batch_seconds, res.torch_threads))
            bare_tp = audio_s / bare_wall
            cfg = ExtractConfig(mode=args.mode, batch_seconds=args.batch_seconds, progress=False, overwrite=True, **opts)
            s = extract(spec, str(work / "data"), str(work / f"cache-{len(name)}"), cfg)
            assert s.ok and s.complete, s.render()
            ratios[name].append((s.audio_seconds / s.wall_seconds / bare_tp, s.audio_seconds / s.shard_seconds / bare_tp, bare_cpu / s.actor_cpu_seconds,
                                 s.model_seconds / s.shard_seconds))
            print(f"rep {rep} {name}: bare {bare_tp:.2f} audio-s/s ({bare_cpu:.1f} CPU-s); pipeline {s.wall_seconds:.2f} s end to end "
                  f"(incl. actor start + model load), {s.shard_seconds:.2f} s actor busy, {s.model_seconds:.2f} s in model calls, "
                  f"{s.actor_cpu_seconds:.1f} actor CPU-s -> ratios {ratios[name][-1][0]:.3f} / {ratios[name][-1][1]:.3f} / CPU "
                  f"{ratios[name][-1][2]:.3f}; model share of actor busy {ratios[name][-1][3]:.3f}")
            last[name] = s
        if not args.skip_joint:
            cfg = ExtractConfig(mode=args.mode, batch_seconds=args.batch_seconds, progress=False, overwrite=True, tier="pooled")
            singles = 0.0
            for m in group:
                sm = extract(m.split("=", 1)[-1], str(work / "data"), str(work / f"single-{m.split('=')[0]}"), cfg)
                assert sm.ok and sm.complete, sm.render()
                singles += sm.wall_seconds
            j = extract_joint(group, str(work / "data"), str(work / "joint"), cfg)
            assert j.ok, j.render()
            joint_ratio.append(singles / j.wall_seconds)
            print(f"rep {rep} joint (ge2e + fbank + tiny wavlm, pooled tier + 3 joint CKA states): {j.wall_seconds:.2f} s vs three single "
                  f"extractions {singles:.2f} s -> joint throughput / singles' {joint_ratio[-1]:.3f}")
            last["joint"] = j
    print()
    for name, rs in ratios.items():
        s = last[name]
        e2e, busy, cpu, share = (np.median([r[k] for r in rs]) for k in range(4))
        print(f"{name}: median ratio pipeline/bare: end-to-end {e2e:.3f}, steady-state (actor busy wall) {busy:.3f}, "
              f"CPU (bare model CPU-s / actor CPU-s, all threads) {cpu:.3f}; same process: model share of actor busy {share:.3f}")
        for t, size in s.tier_bytes.items():
            print(f"  {t} tier: {size / 1e6:.2f} MB = {size / s.audio_seconds:,.0f} bytes per audio second")
        print(f"  actor peak RSS {s.actor_peak_rss_mb:.0f} MB")
    if joint_ratio:
        j = last["joint"]
        print(f"joint extraction: median throughput / (three single-model extractions in sequence) {np.median(joint_ratio):.3f} "
              f"(reps: {', '.join(f'{r:.3f}' for r in joint_ratio)}); per shard joint-CKA {np.median([c.joint_seconds for c in j.shards]):.2f} s, "
              f"joint state {max(c.joint_state_mb for c in j.shards):.1f} MB, actor peak RSS {max(c.actor_peak_rss_mb for c in j.shards):.0f} MB")
    print(f"driver peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
          f"driver CPU {time.process_time() - cpu0:.0f} s")
    ray.shutdown()


if __name__ == "__main__":
    main()

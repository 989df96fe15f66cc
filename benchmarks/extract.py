"""Extraction throughput: the Ray pipeline vs a bare ``for batch: model(batch)`` loop, same data, model and process.

Prints, with every measurement interleaved over ``--reps`` repetitions (medians; shared machines are noisy):
  * pipeline ÷ bare loop for the pooled tier, for both tiers, and for the previous design (one shard
    per actor at a time, tier files written on the model's thread). The bare loop runs **inside the
    pipeline's own actor process**, on each shard right before (or, every other shard, right after)
    the pipeline extracts it: the baseline shares the process, its threads and the minute with what
    it is compared to, so the 20-40 % speed spread between worker processes and over time on a
    shared VM cancels. Steady state is the sum over shards of bare seconds ÷ the actor's busy time;
    end to end adds actor start, model load, the pilot and manifest writes;
  * an in-process A/B without Ray, shard by shard in rotating order: the bare loop and each variant of
    the shard worker (pooled, both tiers with write-behind, both with writes on the model's thread,
    both with lz4), each variant's bare ÷ variant ratio, the model's share of its wall and where the
    time goes (model, features = checks + pooling + fp16 cast, Parquet encoding, publish);
  * joint extraction (GE2E + FBANK + a tiny WavLM, one actor, decode once) throughput ÷ the throughput
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
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layerlab.extract.pool import ExtractActor


def build_corpus(root: str, minutes: float, seed: int = 0, shard_mb: float = 1.0) -> None:
    """Speech-like synthetic utterances of 1-8 s, in shards of about ``shard_mb`` MB (1 MB: ~30 s of audio)."""
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


def shard_batches(url: str, mode: str, max_batch_size: int, max_samples: int) -> list[list[np.ndarray]]:
    """A shard's decoded utterances in the pipeline's batch plan (one bucketing window per shard: shards here are < 600 s)."""
    from layerlab.batching import plan_batches
    from layerlab.data.shards import iter_shard_batches, rows_to_utterances

    wavs = [u.wav for b in iter_shard_batches(url) for u in rows_to_utterances(b)]
    return [[wavs[i] for i in b] for b in plan_batches([w.shape[0] for w in wavs], mode, max_batch_size, max_samples)]


def time_bare(model: Any, batches: list[list[np.ndarray]]) -> tuple[float, float]:
    """(wall, process CPU) seconds of ``model(batch)`` over pre-decoded batches: the baseline."""
    from layerlab.models.batching import pad_batch

    t0, cpu0 = time.perf_counter(), time.process_time()
    for b in batches:
        model(*pad_batch(b))
    return time.perf_counter() - t0, time.process_time() - cpu0


class PairedExtractActor(ExtractActor):
    """The pipeline's model actor; around each shard it also times a bare loop over that shard in this process.

    One (bare, pipeline) pair runs at a time (a lock), alternating which goes first, so neither always
    sees a warmer cache. The price: the next shard is not decoded ahead during a pair, which the
    pipeline pays at each shard start (decoding a shard takes ~0.5 % of its model time here).
    """

    def __init__(self, *args: Any) -> None:  # noqa: D107
        super().__init__(*args)
        self.pair_lock = threading.Lock()
        self.pairs = 0

    def run_shard(self, task: Any, out_url: str, shifts: dict[str, Any]) -> Any:  # noqa: D102
        import json
        import os

        with self.pair_lock:
            w = self.worker
            batches = shard_batches(task.url, self.mode, w.config.max_batch_size, w.max_samples)
            bare_first = self.pairs % 2 == 0
            self.pairs += 1
            if bare_first:
                bare, bare_cpu = time_bare(self.model, batches)
            t0 = time.perf_counter()
            outcome = super().run_shard(task, out_url, shifts)
            pipeline = time.perf_counter() - t0
            if not bare_first:
                bare, bare_cpu = time_bare(self.model, batches)
        outcome.stats.update(bare_seconds=bare, bare_cpu_seconds=bare_cpu, pipeline_cpu_seconds=outcome.stats["cpu_end"] - outcome.stats["cpu_start"])
        with open(os.environ[PAIR_LOG_ENV], "a") as f:  # one line per pair: the per-shard ratios' spread
            f.write(json.dumps({"shard": task.name, "bare_first": bare_first, "bare": bare, "pipeline": pipeline}) + "\n")
        return outcome


PAIR_LOG_ENV = "LAYERLAB_BENCH_PAIR_LOG"


def read_pairs(path: Path) -> list[dict[str, Any]]:
    """The (bare, pipeline) seconds per shard that :class:`PairedExtractActor` logged."""
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


PROFILE_VARIANTS = {  # label -> (tier, options); interleaved shard by shard in one process with the bare loop
    "pooled tier": ("pooled", {}),
    "both tiers, write-behind": ("both", {"write_behind": True}),
    "both tiers, writes on the model thread (before)": ("both", {"write_behind": False}),
    "both tiers, write-behind, lz4": ("both", {"write_behind": True, "compression": "lz4"}),
}


def profile_ab(spec: str, data: str, work: Path, reps: int, batch_seconds: float) -> None:
    """In-process A/B, shard by shard in rotating order: the bare loop and each shard-worker variant; bare ÷ variant per variant."""
    from layerlab import storage
    from layerlab.data.manifest import read_manifest
    from layerlab.extract import ExtractConfig
    from layerlab.extract.shard_worker import ShardExtractor
    from layerlab.models import load

    model = load(spec)
    model(torch.zeros(1, model.sample_rate), torch.tensor([model.sample_rate]))  # warm-up, as the actors do
    workers = {label: ShardExtractor(model, ExtractConfig(tier=tier, mode="bucketed", batch_seconds=batch_seconds, progress=False, **opts), "bucketed")
               for label, (tier, opts) in PROFILE_VARIANTS.items()}
    labels = ["bare loop", *workers]
    steps: dict[str, dict[str, float]] = {k: {} for k in workers}
    per_rep: dict[str, list[float]] = {k: [] for k in labels}
    shards = read_manifest(data).shards
    for rep in range(reps):
        rep_wall = {k: 0.0 for k in labels}
        for j, sh in enumerate(shards):
            url = storage.join(data, sh.name)
            batches = shard_batches(url, "bucketed", 64, int(batch_seconds * model.sample_rate))
            k0 = (rep + j) % len(labels)
            for label in labels[k0:] + labels[:k0]:  # rotate the order: no variant always runs first or last on a shard
                if label == "bare loop":
                    rep_wall[label] += time_bare(model, batches)[0]
                    continue
                t0 = time.perf_counter()
                o = workers[label].run(url, sh.name, sh.sha256, str(work / f"profile-{len(label)}"), {})
                rep_wall[label] += time.perf_counter() - t0
                for key, v in {"model": o.model_seconds, **o.stats}.items():
                    if not key.startswith(("t_", "cpu_", "pid")):
                        steps[label][key] = steps[label].get(key, 0.0) + v
        for k in labels:
            per_rep[k].append(rep_wall[k])
    wall = {k: sum(v) for k, v in per_rep.items()}
    for label in workers:
        ratios = [b / v for b, v in zip(per_rep["bare loop"], per_rep[label])]
        print(f"  {label}: bare loop ÷ this {wall['bare loop'] / wall[label]:.3f} (per repetition {', '.join(f'{r:.3f}' for r in ratios)}); "
              f"model share of wall {steps[label]['model'] / wall[label]:.3f}")
        print("    seconds over all repetitions: " + ", ".join(f"{k.removesuffix('_seconds')} {v:.2f}" for k, v in steps[label].items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--size", choices=["tiny", "base"], default="base")
    ap.add_argument("--mode", default="bucketed")
    ap.add_argument("--batch-seconds", type=float, default=40.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--shard-mb", type=float, default=1.0, help="audio shard size (1 MB: ~30 s of audio; more shards: finer pairs)")
    ap.add_argument("--skip-joint", action="store_true", help="leave out the joint-extraction comparison")
    ap.add_argument("--joint-only", action="store_true", help="only the joint-extraction comparison")
    ap.add_argument("--skip-profile", action="store_true", help="leave out the in-process A/B")
    ap.add_argument("--skip-before", action="store_true", help="leave out the previous design's Ray runs (one shard at a time, inline writes)")
    args = ap.parse_args()

    import ray

    from layerlab.data.manifest import read_manifest
    from layerlab.extract import ExtractConfig
    from layerlab.extract.joint import extract_joint
    from layerlab.extract.pipeline import extract
    from layerlab.models import tiny

    work = Path(tempfile.mkdtemp(prefix="layerlab-bench-"))
    build_corpus(str(work / "data"), args.minutes, shard_mb=args.shard_mb)
    spec = f"s3prl:wavlm_local:{tiny.build_s3prl_wavlm(work / 'wavlm.pt', size=args.size)}"
    manifest = read_manifest(str(work / "data"))
    audio_s = manifest.audio_seconds
    cpu0 = time.process_time()
    print(f"model: WavLM {args.size} (s3prl format, random weights), audio: {audio_s / 60:.2f} min in {len(manifest.shards)} shards, "
          f"mode {args.mode}, batch {args.batch_seconds:g} s, device {'cuda' if torch.cuda.is_available() else 'cpu'}, "
          f"{args.reps} interleaved repetitions; the bare loop runs in the pipeline's actor process, paired with each shard")
    if not args.skip_profile and not args.joint_only:
        print(f"\nin-process A/B, no Ray ({args.reps} repetitions, shard by shard in rotating order, the model's thread and the writer in one process):")
        profile_ab(spec, str(work / "data"), work, args.reps, args.batch_seconds)
    ray.init(address="local", include_dashboard=False, log_to_driver=False)  # its own embedded Ray, never a head left running
    variants = {"pooled": dict(tier="pooled"), "both": dict(tier="both"),
                "both, one shard at a time, writes on the model thread (before)": dict(tier="both", write_behind=False, tasks_per_actor=1)}
    if args.skip_before:
        variants = {k: v for k, v in variants.items() if "before" not in k}
    if args.joint_only:
        variants = {}
    ratios: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in variants}
    pairs: dict[str, list[dict[str, Any]]] = {k: [] for k in variants}
    joint_ratio: list[float] = []
    last: dict[str, Any] = {}
    tiny_spec = f"s3prl:wavlm_local:{tiny.build_s3prl_wavlm(work / 'wavlm-tiny.pt', size='tiny')}"
    group = ["ge2e", "fbank", f"wavlm={tiny_spec}"]  # light models: decoding once is what joint extraction saves
    for rep in range(args.reps):
        for name, opts in variants.items():
            log_path = work / f"pairs-{rep}-{len(name)}.jsonl"
            cfg = ExtractConfig(mode=args.mode, batch_seconds=args.batch_seconds, progress=False, overwrite=True,
                                env_vars={PAIR_LOG_ENV: str(log_path)}, **opts)
            s = extract(spec, str(work / "data"), str(work / f"cache-{len(name)}"), cfg, actor_body=PairedExtractActor)
            assert s.ok and s.complete, s.render()
            pairs[name] += read_pairs(log_path)
            bare, bare_cpu = s.step_seconds["bare"], s.step_seconds["bare_cpu"]
            steady = bare / s.shard_seconds
            e2e = bare / (s.wall_seconds - bare)  # the pairs' bare loops ran inside the wall, one after the other
            cpu = bare_cpu / s.step_seconds["pipeline_cpu"]
            ratios[name].append((steady, e2e, cpu, s.model_seconds / s.shard_seconds))
            print(f"rep {rep} {name}: bare loop {audio_s / bare:.2f} audio-s/s ({bare:.2f} s, {bare_cpu:.1f} CPU-s); pipeline {s.shard_seconds:.2f} s "
                  f"actor busy, {s.model_seconds:.2f} s in model calls (with checks, pooling, CKA), {s.wall_seconds - bare:.2f} s end to end "
                  f"(incl. actor start + model load), {s.step_seconds['pipeline_cpu']:.1f} actor CPU-s -> steady {steady:.3f}, end to end {e2e:.3f}, "
                  f"CPU {cpu:.3f}; model share of busy {ratios[name][-1][3]:.3f}", flush=True)
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
                  f"extractions {singles:.2f} s -> joint throughput / singles' {joint_ratio[-1]:.3f}", flush=True)
            last["joint"] = j
    print()
    for name, rs in ratios.items():
        s = last[name]
        steady, e2e, cpu, share = (np.median([r[k] for r in rs]) for k in range(4))
        per_shard = np.array([p["bare"] / p["pipeline"] for p in pairs[name]])
        q1, med, q3 = np.percentile(per_shard, [25, 50, 75])
        print(f"{name}: median pipeline ÷ bare loop (same actor process): steady state {steady:.3f} "
              f"(reps {', '.join(f'{r[0]:.3f}' for r in rs)}), end to end {e2e:.3f}, CPU-s {cpu:.3f}; model share of actor busy {share:.3f}")
        print(f"  per shard pair ({len(per_shard)} pairs): bare ÷ pipeline median {med:.3f} [IQR {q1:.3f}-{q3:.3f}]; "
              f"all pairs' sums {sum(p['bare'] for p in pairs[name]) / sum(p['pipeline'] for p in pairs[name]):.3f}")
        print("  actor seconds per step (last rep): " + ", ".join(f"{k} {v:.2f}" for k, v in s.step_seconds.items() if not k.startswith(("bare", "pipeline"))))
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

"""Probe throughput: training from the activation cache vs recomputing the frozen model every step (as s3prl does).

Prints, from one process on the same data, model and probe:
1. utterance level (SID, weighted sum of all layers -> Linear(H, 256) -> mean pool -> Linear): training
   steps/s from the pooled cache / steps/s when every step runs the model on the batch's audio, both
   trained with the same init and batch order for the same epochs, with their dev accuracies;
2. frame level (PR, CTC): frames/s streamed from the frames tier through the probe's training step /
   frames/s of the model's forward pass alone.
Run:  .venv/bin/python benchmarks/probe.py --data runs/demo/corpus --cache runs/demo/cache/ge2e --model ge2e
(the cache must hold both tiers: `layerlab extract --model ge2e --data ... --out ... --tier both`).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def load_audio(root: str, ids: set[str]) -> dict[str, np.ndarray]:
    """Decoded audio of ``ids`` from the audio shards."""
    from layerlab.data.shards import iter_utterances

    return {u.id: u.wav for u in iter_utterances(root) if u.id in ids}


def model_means(model, wavs: list[np.ndarray], layers: list[str]) -> list[torch.Tensor]:
    """What s3prl does each step: run the frozen model, then mean-pool each layer's valid frames."""
    from layerlab.models.batching import pad_batch

    out = model(*pad_batch(wavs))
    means = []
    for name in layers:
        h, n = out.layer(name)
        mask = (torch.arange(h.shape[1])[None, :] < n[:, None]).float()
        means.append((h * mask[..., None]).sum(1) / n[:, None].clamp(min=1))
    return means


def utterance_ratio(cache: str, data: str, spec: str, epochs: int, seed: int) -> None:
    from layerlab.models.registry import load
    from layerlab.probe.config import ProbeConfig
    from layerlab.probe.source import open_source
    from layerlab.probe.tasks import get_task

    source = open_source(cache)
    tdef = get_task("sid")
    cfg = ProbeConfig(batch_size=32, lr=1e-3, intervals=False)
    layers = [l.name for l in source.layers]
    bound = tdef.bind(source, tdef, cfg, layers)
    model = load(spec, device="cpu")
    train_ids = bound.splits.ids["train"]
    audio = load_audio(data, set(train_ids) | set(bound.splits.ids["dev"]))

    def run(recompute: bool) -> tuple[float, float, int]:
        probe = bound.build({}, seed)  # same init for both
        opt = torch.optim.Adam(probe.parameters(), lr=cfg.lr)
        steps, seconds = 0, 0.0
        for epoch in range(epochs):
            order = np.random.default_rng([seed, epoch]).permutation(len(train_ids))  # same batch order for both
            for start in range(0, len(order), cfg.batch_size):
                ids = [train_ids[i] for i in order[start : start + cfg.batch_size]]
                t0 = time.perf_counter()
                means, y = bound._pooled_batch(ids)
                if recompute:
                    with torch.no_grad():
                        means = model_means(model, [audio[u] for u in ids], layers)
                loss = torch.nn.functional.cross_entropy(probe.forward_pooled(means), y[:, 0])
                opt.zero_grad()
                loss.backward()
                opt.step()
                seconds += time.perf_counter() - t0
                steps += 1
        return steps / seconds, bound.evaluate(probe, "dev").metrics["accuracy"], steps

    fast, acc_fast, steps = run(False)
    slow, acc_slow, _ = run(True)
    print(f"utterance-level SID probe, {len(layers)} layers, {steps} steps ({epochs} epochs, batch {cfg.batch_size}):")
    print(f"  pooled cache   : {fast:10.1f} steps/s   dev accuracy {acc_fast:.3f}")
    print(f"  model each step: {slow:10.2f} steps/s   dev accuracy {acc_slow:.3f}")
    print(f"  ratio (cache / recompute): {fast / slow:.0f}x")


def frame_ratio(cache: str, data: str, spec: str, seed: int) -> None:
    from layerlab.models.batching import pad_batch
    from layerlab.models.registry import load
    from layerlab.probe.config import ProbeConfig
    from layerlab.probe.source import open_source
    from layerlab.probe.tasks import get_task

    source = open_source(cache)
    tdef = get_task("pr")
    cfg = ProbeConfig(batch_size=16, lr=1e-2, intervals=False)
    layers = [l.name for l in source.layers]
    bound = tdef.bind(source, tdef, cfg, layers)
    probe = bound.build({}, seed)
    opt = torch.optim.Adam(probe.parameters(), lr=cfg.lr)
    frames, t0 = 0, time.perf_counter()
    for batch in bound.train_batches(0, seed):
        loss = bound.loss(probe, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        frames += int(batch[2].sum())
    stream = frames / (time.perf_counter() - t0)
    model = load(spec, device="cpu")
    audio = load_audio(data, set(bound.splits.ids["train"]))
    wavs = sorted(audio.values(), key=len)
    produced, t0 = 0, time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(wavs), cfg.batch_size):
            out = model(*pad_batch(wavs[i : i + cfg.batch_size]))
            produced += int(max(n.sum() for n, lay in zip(out.lengths, model.layers) if not lay.utterance_level))
    forward = produced / (time.perf_counter() - t0)
    print(f"frame-level PR probe (CTC), {len(layers)} layers, one epoch over {len(bound.splits.ids['train'])} utterances:")
    print(f"  probe training, frames streamed from the cache: {stream:10.0f} frames/s")
    print(f"  model forward pass alone                      : {forward:10.0f} frames/s")
    print(f"  ratio (streamed probe / model forward): {stream / forward:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="audio-shard dataset the cache was extracted from")
    ap.add_argument("--cache", required=True, help="activation cache with pooled and frames tiers")
    ap.add_argument("--model", default="ge2e", help="the cache's model spec (run each step for the baseline)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    utterance_ratio(args.cache, args.data, args.model, args.epochs, args.seed)
    frame_ratio(args.cache, args.data, args.model, args.seed)


if __name__ == "__main__":
    main()

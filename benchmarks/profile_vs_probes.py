"""Training-free phone profile vs SGD per-layer PR probes: speed on one cache, and how alike they rank the layers.

Prints, in one process:
1. speed: a 13-layer model (s3prl WavLM architecture, 12 encoder layers, random weights) over a synthetic
   corpus; the closed-form per-layer phone profile (``layerlab profile --reference phone``: pilot, both
   passes, CCA and the ridge classifier with jackknife intervals; once without and once with k-means MI)
   against the per-layer SGD PR probes (``layerlab probe --task pr --layers each --runner local``) with the
   demo's PR settings and with ProbeConfig's defaults, on the same cache, and the ratios SGD s / closed-form s;
2. ranking: for each model of a finished demo study (``--demo runs/demo``), Spearman rho over the frame-level
   layers between the closed-form phone accuracy (test split) and the SGD per-layer PR probes (test PER,
   lower is better), with the probes' convergence (stopped by patience or the epoch cap).

Run:  .venv/bin/python benchmarks/profile_vs_probes.py --demo runs/demo [--data runs/demo/corpus/synth] [--sgd demo,default]
      [--skip-speed] [--skip-ranking]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

#: the demo's PR probe settings (layerlab/study/demo.yaml), per layer
DEMO_PR = {"lr": 0.02, "patience": 4, "max_train_utterances": 200, "batch_size": 8, "hidden": 128, "weight_decay": 1e-3}


def deep_wavlm(path: Path, seed: int = 0) -> Path:
    """A 13-layer (CNN features + 12 transformer layers) s3prl WavLM checkpoint with narrow random weights."""
    from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

    from layerlab.models import tiny
    from layerlab.models.formats import s3prl_wavlm

    import torch

    torch.manual_seed(seed)
    cfg = dict(tiny.wavlm_cfg("tiny"), encoder_layers=12, encoder_embed_dim=64, encoder_ffn_embed_dim=128)
    s3prl_wavlm.write(str(path), cfg, WavLM(WavLMConfig(cfg)).state_dict())
    return path


def speed(work: Path, speakers: int, seed: int, data: Path | None, sgd: list[str]) -> None:
    from layerlab.data.synth import SynthConfig, build_synth_corpus
    from layerlab.extract import ExtractConfig, extract
    from layerlab.probe import ProbeConfig, run_probe
    from layerlab.profile import ProfileJob, run_profile

    if data is None:
        data = work / "corpus"
        build_synth_corpus(str(data), SynthConfig(speakers=speakers, seed=seed, workers=2), progress=False)
    spec = f"s3prl:wavlm_local:{deep_wavlm(work / 'wavlm13.pt', seed)}"
    cache = work / "cache"
    extract(spec, str(data), str(cache), ExtractConfig(tier="both", progress=False, concurrency=[1, 1]))
    layers = json.loads((cache / "metadata.json").read_text())["layer_names"]
    manifest = json.loads((cache / "manifest.json").read_text())
    print(f"speed: {len(layers)}-layer WavLM (random weights, dim 64), {manifest.get('kept', '?')} utterances of {data}")
    timings = {}
    for name, clusters in (("closed form (CCA + ridge classifier, intervals)", 0), ("closed form + k-means MI (k=100)", 100)):
        t0 = time.perf_counter()
        summary = run_profile(ProfileJob(str(cache), "phone", clusters=clusters, seed=seed), str(work / f"profile{clusters}"))
        timings[name] = time.perf_counter() - t0
        print(f"  {name}: {timings[name]:.1f} s  (phases: {summary['timing_s']})")
    for setting in sgd:  # demo: the demo's budget settings; default: ProbeConfig's defaults (whole train split, patience 10)
        t0 = time.perf_counter()
        config = ProbeConfig(**DEMO_PR) if setting == "demo" else ProbeConfig()
        run_probe(str(cache), "pr", str(work / f"sgd-{setting}"), layers="each", config=config, seed=seed, runner="local")
        took = time.perf_counter() - t0
        conv = json.loads((work / f"sgd-{setting}" / "summary.json").read_text()).get("convergence", {})
        epochs = [int(v.get("epochs", 0)) for v in conv.values()]
        print(f"  SGD per-layer PR probes ({len(layers)} probes, {setting} settings): {took:.1f} s; stopped by "
              f"{sorted({str(v.get('stopped_by')) for v in conv.values()}) if conv else 'not recorded'}, epochs {min(epochs, default=0)}-{max(epochs, default=0)}")
        for name, t in timings.items():
            print(f"  ratio SGD ({setting}) / {name}: {took / t:.1f}x")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def ranking(demo: Path, work: Path, seed: int) -> None:
    from layerlab.cache import open_cache
    from layerlab.profile import ProfileJob, run_profile

    print(f"ranking: closed-form phone accuracy vs SGD per-layer PR (test split, frame-level layers) on {demo}")
    caches = sorted(p for p in (demo / "cache").glob("*/*") if (p / "metadata.json").exists())
    rhos = []
    for cache in caches:
        dataset, model = cache.parent.name, cache.name
        metrics_url = demo / "probe" / dataset / model / "pr" / "metrics.parquet"
        if not metrics_url.exists():
            continue
        frame = [m.name for m in open_cache(str(cache)).layers if m.level == "frame"]
        table = demo / "profile" / dataset / model / "profile.parquet"
        t0 = time.perf_counter()
        if not table.exists():  # the demo did not run the profile stage: compute it now
            table = Path(run_profile(ProfileJob(str(cache), "phone", seed=seed), str(work / "rank" / model))["table"])
        took = time.perf_counter() - t0
        prof = pd.read_parquet(table)
        phone = prof[prof["reference"] == "phone"]
        acc = phone[(phone["measure"] == "accuracy") & (phone["split"] == "test")].set_index("layer")["value"]
        other = {m: phone[phone["measure"] == m].set_index("layer")["value"] for m in ("cca_mean", "pnmi")}
        m = pd.read_parquet(metrics_url)
        per = m[(m["probe"] != "weighted_sum") & (m["split"] == "test") & (m["metric"].str.lower() == "per")].drop_duplicates("probe", keep="last")
        per = per.set_index("probe")["value"]
        layers = [n for n in frame if n in acc.index and n in per.index]
        summary = json.loads((metrics_url.parent / "summary.json").read_text()) if (metrics_url.parent / "summary.json").exists() else {}
        stops = sorted({str(v.get("stopped_by")) for k, v in (summary.get("convergence") or {}).items() if k != "weighted_sum"})
        rho = spearman(acc.loc[layers].to_numpy(), -per.loc[layers].to_numpy())
        if np.isfinite(rho):
            rhos.append(rho)
        also = ", ".join(f"{m} {spearman(v.reindex(layers).to_numpy(), -per.loc[layers].to_numpy()):+.2f}" for m, v in other.items()
                         if v.reindex(layers).notna().all())
        best_tf = layers[int(np.argmax(acc.loc[layers]))] if layers else "-"
        best_sgd = layers[int(np.argmin(per.loc[layers]))] if layers else "-"
        print(f"  {model:22s} {len(layers):2d} frame layers  Spearman {rho:+.2f} (other measures: {also or '-'})  best: closed form "
              f"{best_tf}, SGD {best_sgd}; SGD test PER {', '.join(f'{n} {per[n]:.3f}' for n in layers)}; closed-form test accuracy "
              f"{', '.join(f'{n} {acc[n]:.3f}' for n in layers)}; SGD stopped by {stops or 'not recorded'}; closed form {took:.1f} s")
    if rhos:
        print(f"  median Spearman over {len(rhos)} models: {np.median(rhos):+.2f} (min {min(rhos):+.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", type=Path, default=Path("runs/demo"),
                    help="a finished demo study (default runs/demo): caches and per-layer PR probes to rank against")
    ap.add_argument("--speakers", type=int, default=12, help="speakers of the synthetic corpus built for the speed comparison")
    ap.add_argument("--data", type=Path, help="an audio-shard dataset with phone alignments to use instead (e.g. runs/demo/corpus/synth)")
    ap.add_argument("--sgd", default="demo,default", help="SGD probe settings to time: demo (the demo's PR budget), default (ProbeConfig)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-ranking", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="layerlab-bench-profile-") as tmp:
        if not args.skip_speed:
            speed(Path(tmp) / "speed", args.speakers, args.seed, args.data, [x.strip() for x in args.sgd.split(",") if x.strip()])
        if args.skip_ranking:
            return
        if not (args.demo / "probe").is_dir():
            print(f"ranking: skipped, no finished demo study at {args.demo} (run `make demo`, or pass --demo DIR)")
            return
        ranking(args.demo, Path(tmp), args.seed)


if __name__ == "__main__":
    main()

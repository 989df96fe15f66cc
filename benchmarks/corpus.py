"""Synthetic-corpus build cost: wall time, audio hours, real-time factor, shard sizes, quarantine.

Run: ``.venv/bin/python benchmarks/corpus.py [--speakers N] [--workers W] [--config YAML] [--out DIR]``.
Builds the demo corpus (SynthConfig defaults unless a config is given) into a temporary folder
(or ``--out``), then prints the build summary, the per-stage rates and a determinism check (a
second build with ``--repeat``). Nothing is asserted: the issue's budget is <= 3 min on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layerlab.data.manifest import read_manifest  # noqa: E402
from layerlab.data.synth import SynthConfig, build_synth_corpus  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="SynthConfig YAML (default: built-in demo defaults)")
    parser.add_argument("--speakers", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--out", help="output folder (default: a temporary one)")
    parser.add_argument("--repeat", action="store_true", help="build twice and compare the manifests byte for byte")
    args = parser.parse_args()

    cfg = SynthConfig.from_yaml(args.config) if args.config else SynthConfig()
    updates = {k: v for k, v in {"speakers": args.speakers, "workers": args.workers}.items() if v is not None}
    cfg = cfg.model_copy(update=updates)
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
        out = args.out or str(Path(tmp) / "corpus")
        t0 = time.perf_counter()
        summary = build_synth_corpus(out, cfg, progress=True)
        wall = time.perf_counter() - t0
        print(summary.render())
        m = read_manifest(out)
        print(f"workers: {cfg.workers}; wall: {wall:.1f} s; audio: {m.audio_hours:.3f} h; "
              f"real-time factor: {m.audio_seconds / wall:.0f}x; {m.kept / wall:.1f} utt/s")  # fmt: skip
        for s in m.shards:
            print(f"  {s.name}: {s.rows} rows, {s.bytes / 1e6:.2f} MB, {s.audio_seconds / 60:.1f} min of audio")
        print(f"  total: {sum(s.bytes for s in m.shards) / 1e6:.1f} MB; quarantined: {m.quarantined}")
        if args.repeat:
            again = str(Path(tmp) / "again")
            t0 = time.perf_counter()
            build_synth_corpus(again, cfg, progress=False)
            same = (Path(out) / "manifest.json").read_bytes() == (Path(again) / "manifest.json").read_bytes()
            print(f"second build: {time.perf_counter() - t0:.1f} s; manifest (all shard sha256) identical: {same}")


if __name__ == "__main__":
    main()

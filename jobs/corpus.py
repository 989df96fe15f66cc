"""`ray job submit` entry point: build an audio-shard dataset (synthetic or imported) on the cluster.

    ray job submit --working-dir . -- python jobs/corpus.py synth --out s3://bucket/corpora/synth
    ray job submit --working-dir . -- python jobs/corpus.py import librispeech s3://bucket/raw/LibriSpeech \
        --out s3://bucket/corpora/librispeech
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser("synth", help="build the synthetic espeak-ng corpus")
    synth.add_argument("--out", required=True)
    synth.add_argument("--config", help="YAML SynthConfig (defaults: the demo corpus)")
    synth.add_argument("--speakers", type=int)
    synth.add_argument("--seed", type=int)
    imp = sub.add_parser("import", help="import a dataset tree")
    imp.add_argument("kind")
    imp.add_argument("src")
    imp.add_argument("--out", required=True)
    args = parser.parse_args()

    if args.command == "synth":
        from layerlab.data.synth import SynthConfig, build_synth_corpus

        config = SynthConfig.from_yaml(args.config) if args.config else SynthConfig()
        updates = {k: v for k, v in (("speakers", args.speakers), ("seed", args.seed)) if v is not None}
        summary = build_synth_corpus(args.out, config.model_copy(update=updates))
    else:
        from layerlab.data.importers import import_dataset

        summary = import_dataset(args.kind, args.src, args.out)
    print(summary.render())


if __name__ == "__main__":
    main()

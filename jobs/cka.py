"""Ray job: layer x layer CKA of activation caches (``ray job submit -- python jobs/cka.py --a ... --out ...``)."""

from __future__ import annotations

import argparse


def main() -> None:
    """Parse arguments and call the library (all logic lives in layerlab.cka)."""
    parser = argparse.ArgumentParser(description="Layer x layer linear CKA of one or two activation caches on Ray.")
    parser.add_argument("--a", required=True, help="activation cache of model A")
    parser.add_argument("--b", default=None, help="activation cache of model B")
    parser.add_argument("--out", required=True, help="output folder URL")
    parser.add_argument("--estimator", default="biased", choices=["biased", "debiased", "minibatch"])
    parser.add_argument("--level", default="frame", choices=["frame", "utterance"])
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--bootstrap", type=int, default=0)
    parser.add_argument("--group-by", default="speaker", choices=["shard", "speaker", "utterance"])
    parser.add_argument("--checkpoint", default=None, help="reducer checkpoint URL (default: OUT/reducer.ckpt)")
    args = parser.parse_args()

    import ray

    from layerlab import storage
    from layerlab.cka.pipeline import CKAJob
    from layerlab.cka.reducer import run_cka_on_ray

    ray.init()
    job = CKAJob(args.a, args.b, args.estimator, args.level, args.batch_size, group_by=args.group_by if args.bootstrap else "shard")
    summary = run_cka_on_ray(job, args.out, args.checkpoint or storage.join(args.out, "reducer.ckpt"), args.bootstrap)
    print(summary)


if __name__ == "__main__":
    main()

"""``ray job submit -- python jobs/train.py RECIPE --data URL --out URL [--config YAML]``: thin entry point.

The same sub-commands and options as ``layerlab train`` (it is that command group); Ray is joined
through RAY_ADDRESS (set by ray job submit).

Example:  ray job submit --working-dir . -- python jobs/train.py dino --data s3://bucket/vox2 \\
              --out s3://bucket/train/dino --config configs/train/dino-voxceleb2.yaml
"""

from __future__ import annotations

from layerlab.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("train")

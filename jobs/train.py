"""``ray job submit -- python jobs/train.py RECIPE --data URL --out URL [--config YAML]``: thin entry point.

Example:  ray job submit --working-dir . -- python jobs/train.py dino --data s3://bucket/vox2 \
              --out s3://bucket/train/dino --config configs/train/dino-voxceleb2.yaml
"""

from __future__ import annotations

import typer

from layerlab.train.cli import register


def main() -> None:
    """Parse the same sub-commands as ``layerlab train``; Ray is joined through RAY_ADDRESS (set by ray job submit)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)
    register(app)
    app(prog_name="jobs/train.py", args=["train", *__import__("sys").argv[1:]])


if __name__ == "__main__":
    main()

"""``ray job submit -- python jobs/extract.py --model SPEC --data URL --out URL [...]``: thin entry point.

Example:  ray job submit --working-dir . -- python jobs/extract.py --model s3prl:wavlm_base_plus \
              --data s3://bucket/corpus --out s3://bucket/cache/wavlm --tier both --concurrency 1,8
"""

from __future__ import annotations

import typer

from layerlab.extract.cli import register


def main() -> None:
    """Parse the same options as ``layerlab extract``, ``ray.init()`` (RAY_ADDRESS), extract, print the summary."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)
    app(prog_name="jobs/extract.py")


if __name__ == "__main__":
    main()

"""``ray job submit -- python jobs/probe.py --cache URL --task T --out URL [...]``: thin entry point.

Example:  ray job submit --working-dir . -- python jobs/probe.py --cache s3://bucket/cache/wavlm \
              --task sid --out s3://bucket/probe/wavlm-sid --tune 16 --scheduler asha
"""

from __future__ import annotations

import typer

from layerlab.probe.cli import register


def main() -> None:
    """Parse the same options as ``layerlab probe`` (Ray joins RAY_ADDRESS's cluster), probe, print the summary."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)
    app(prog_name="jobs/probe.py")


if __name__ == "__main__":
    main()

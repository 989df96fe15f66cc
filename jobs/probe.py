"""``ray job submit -- python jobs/probe.py --cache URL --task T --out URL [...]``: thin entry point.

The same options as ``layerlab probe`` (it is that command); Ray joins the job's cluster (RAY_ADDRESS).

Example:  ray job submit --working-dir . -- python jobs/probe.py --cache s3://bucket/cache/wavlm \
              --task sid --out s3://bucket/probe/wavlm-sid --tune 16 --scheduler asha
"""

from __future__ import annotations

from layerlab.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("probe")

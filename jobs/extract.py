"""``ray job submit -- python jobs/extract.py --model SPEC --data URL --out URL [...]``: thin entry point.

The same options as ``layerlab extract`` (it is that command).

Example:  ray job submit --working-dir . -- python jobs/extract.py --model s3prl:wavlm_base_plus \
              --data s3://bucket/corpus --out s3://bucket/cache/wavlm --tier both --concurrency 1,8
"""

from __future__ import annotations

from layerlab.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("extract")

"""``ray job submit -- python jobs/study.py CONFIG.yaml [--out URL] [--dry-run]``: thin entry point.

The same arguments and options as ``layerlab study`` (it is that command); Ray joins the job's cluster
(RAY_ADDRESS).

Example:  ray job submit --address http://127.0.0.1:8265 --working-dir . --runtime-env cluster/runtime_env.yaml \\
              -- python jobs/study.py configs/paper.yaml --out s3://my-bucket/studies/paper
"""

from __future__ import annotations

from layerlab.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("study")

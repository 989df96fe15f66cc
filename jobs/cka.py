"""``ray job submit -- python jobs/cka.py --a CACHE [--b CACHE] --out URL [...]``: thin entry point.

The same options as ``layerlab cka`` (it is that command), run on Ray: one task per shard and a
checkpointed reducer actor (``--on-ray`` is implied).

Example:  ray job submit --working-dir . -- python jobs/cka.py --a s3://bucket/cache/wavlm --b s3://bucket/cache/ecapa \
              --out s3://bucket/results/cka --level utterance --bootstrap 200
"""

from __future__ import annotations

from layerlab.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("cka", prepend=("--on-ray",))

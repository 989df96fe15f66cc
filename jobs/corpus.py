"""``ray job submit -- python jobs/corpus.py synth|import|info|verify ...``: thin entry point.

The same sub-commands and options as ``layerlab corpus`` (it is that command group).

Example:  ray job submit --working-dir . -- python jobs/corpus.py import librispeech s3://bucket/raw/LibriSpeech \
              --out s3://bucket/corpora/librispeech
"""

from __future__ import annotations

from layerlab.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("corpus")

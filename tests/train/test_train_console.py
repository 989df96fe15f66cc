"""`layerlab train` as a user runs it (a real process, output not a terminal): each worker line once, no colour codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.train_inputs import tiny_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_train_prints_each_worker_line_once_without_escape_codes(train_corpus: str, tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config("supervised")))
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ""}
    run = subprocess.run([sys.executable, "-m", "layerlab.cli", "train", "supervised", "--data", train_corpus, "--out", str(tmp_path / "o"),
                          "--config", str(cfg)], capture_output=True, text=True, timeout=900, env=env)
    text = run.stdout + run.stderr
    assert run.returncode == 0, text
    assert "\x1b[" not in text
    ours = [line.split(") ", 1)[-1] for line in text.splitlines() if "[supervised]" in line]
    assert any("epoch 1/1" in line for line in ours) and len(ours) == len(set(ours)), ours

"""`layerlab probe` as a user runs it (a real process, output not a terminal): no Tune experiment box, no TensorBoard
hint, no colour codes; with --verbose Tune's own banners come back (slow: a real Tune sweep in a fresh Ray)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cache_e2e import fbank_cache, tiny_corpus  # noqa: F401 - session fixtures

REPO = Path(__file__).resolve().parents[2]


def _probe(cache: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "layerlab.cli", "probe", "--cache", cache, "--task", "sid", "--out", str(out), "--layers", "weighted", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ""}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)


@pytest.mark.slow
def test_probe_console_has_no_third_party_banners(fbank_cache: str, tmp_path: Path) -> None:  # noqa: F811
    quiet = _probe(fbank_cache, tmp_path / "quiet")
    text = quiet.stdout + quiet.stderr
    assert quiet.returncode == 0, text
    assert "Configuration for experiment" not in text and "tensorboard" not in text.lower() and "\x1b[" not in text
    assert "test weighted_sum/accuracy" in quiet.stdout
    loud = _probe(fbank_cache, tmp_path / "loud", "--verbose")
    assert loud.returncode == 0 and "Configuration for experiment" in loud.stdout + loud.stderr

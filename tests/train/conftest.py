"""Fixtures for training tests: the tiny synthetic corpus (6 espeak-ng speakers), built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.train_inputs import tiny_synth


@pytest.fixture(scope="session")
def train_corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    """6 speakers x 3 read sentences: 4 training speakers, 2 held out for the trials."""
    return tiny_synth(str(tmp_path_factory.mktemp("train_corpus") / "corpus"))


@pytest.fixture()
def out_dir(tmp_path: Path) -> str:
    return str(tmp_path / "run")

"""The demo config ships inside the wheel, so `layerlab demo` works from an installed package."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_a_regular_package() -> None:
    """A folder of modules without __init__.py would be left out of the wheel (and of the import contracts)."""
    for folder in (REPO / "layerlab").rglob("*"):
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py")):
            assert (folder / "__init__.py").exists(), folder


@pytest.mark.slow
def test_wheel_contains_the_demo_study(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "__pycache__", "*.egg-info", "build"), symlinks=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "-w", str(tmp_path / "dist"), "--no-deps", "--no-build-isolation", "-q"],
                   check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("layerlab-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"layerlab/study/demo.yaml", "layerlab/study/cli.py", "layerlab/report/build.py"} <= names

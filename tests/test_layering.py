"""Enforced layering and lint: `lint-imports` (contracts in pyproject.toml) and `ruff check` have zero findings,
the contracts really fail on a forbidden import, and jobs/ scripts only call the CLI."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on the package under ``root`` (its own copy first on the import path)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "4 kept, 0 broken" in result.stdout


def test_ruff_has_no_findings() -> None:
    result = subprocess.run([str(BIN / "ruff"), "check", "layerlab", "tests", "jobs", "benchmarks"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize(
    ("path", "line", "broken"),
    [
        ("layerlab/cka/injected.py", "import layerlab.extract.pipeline\n", "stages import downward"),
        ("layerlab/cache/injected.py", "from layerlab.cka import state_io\n", "stages import downward"),
        ("layerlab/probe/__init__.py", "from layerlab.extract import ExtractConfig\n", "probe reads caches"),
        ("layerlab/probe/__init__.py", "from layerlab.models import load\n", "probe reads caches"),
        ("layerlab/train/__init__.py", "from layerlab.cache import open_cache\n", "train uses datasets"),
        ("layerlab/report/__init__.py", "import layerlab.data.shards\n", "report reads results only"),
    ],
)
def test_contracts_fail_on_a_forbidden_import(tmp_path: Path, path: str, line: str, broken: str) -> None:
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copytree(ROOT / "layerlab", copy / "layerlab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    target = copy / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(target.read_text() + line if target.exists() else line)
    result = _lint_imports(copy)
    assert result.returncode != 0
    broken_section = result.stdout.split("Broken contracts", 1)[-1]
    assert broken in broken_section, result.stdout[-3000:]


def test_job_scripts_only_call_the_cli() -> None:
    """jobs/*.py are thin: they import the typer app (layerlab.cli) or a stage's cli module, nothing else of layerlab."""
    for script in sorted((ROOT / "jobs").glob("*.py")):
        tree = ast.parse(script.read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        ours = {m for m in modules if m.startswith("layerlab")}
        assert ours and all(m == "layerlab.cli" or m.endswith(".cli") for m in ours), (script.name, ours)

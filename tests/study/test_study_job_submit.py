"""`ray job submit --working-dir .` of jobs/study.py against a real local head: a tiny study, SUCCEEDED, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers.ray_head import submit_and_wait
from study_fixtures import tiny_study


@pytest.mark.slow
def test_ray_job_submit_runs_a_tiny_study(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_study(cka={"within": None, "across": {"levels": ["utterance"]}})))
    out = tmp_path / "study"
    job = submit_and_wait(tmp_path, ["python", "jobs/study.py", str(config), "--out", str(out)], timeout_s=600, via_cli=True)
    assert job.ok, job.logs[-3000:]
    assert "report: " in job.logs and "0 failed" in job.logs
    run = json.loads((out / "run.json").read_text())
    assert run["failed"] == [] and {"corpus/synth", "extract/synth/fbank", "extract/synth/mfcc", "report"} <= set(run["computed"])
    page = (out / "report" / "index.html").read_text()
    assert "data-model='fbank'" in page and "data-model='mfcc'" in page
    assert (out / "cache" / "synth" / "fbank" / "manifest.json").exists()

"""`ray job submit` of jobs/extract.py against a real local head (`ray start --head --block`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.ray_head import submit_and_wait
from helpers.speech_corpus import build_corpus


@pytest.mark.slow
def test_ray_job_submit_extract(tmp_path: Path) -> None:
    from layerlab.cache import open_cache
    from layerlab.models import tiny

    data = str(tmp_path / "data")
    kept = build_corpus(data, utterances=8, short_ids=(), nan_ids=())
    ckpt = tiny.build_s3prl_wavlm(tmp_path / "wavlm.pt", seed=1)
    out = str(tmp_path / "cache")
    job = submit_and_wait(tmp_path, ["python", "jobs/extract.py", "--model", f"s3prl:wavlm_local:{ckpt}", "--data", data, "--out", out,
                                     "--tier", "both", "--no-progress"], timeout_s=240)
    assert job.ok, job.logs[-3000:]
    assert "complete" in job.logs
    cache = open_cache(out)
    assert cache.manifest.complete and cache.manifest.kept == len(kept)

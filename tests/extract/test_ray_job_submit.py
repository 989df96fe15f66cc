"""`ray job submit` of jobs/extract.py against a real local head (`ray start --head --block`): one model, then a joint group."""

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


@pytest.mark.slow
def test_ray_job_submit_joint_extract(tmp_path: Path) -> None:
    """A joint group through the same entry point and the same actor pool: one actor, two caches, one joint state."""
    from layerlab.cache import open_cache
    from layerlab.models import tiny

    data = str(tmp_path / "data")
    kept = build_corpus(data, utterances=8, short_ids=(), nan_ids=())
    ckpt = tiny.build_s3prl_wavlm(tmp_path / "wavlm.pt", seed=1)
    out = str(tmp_path / "caches")
    job = submit_and_wait(tmp_path, ["python", "jobs/extract.py", "--model", f"wavlm=s3prl:wavlm_local:{ckpt}", "--model", "fbank",
                                     "--data", data, "--out", out, "--no-progress"], timeout_s=240)
    assert job.ok, job.logs[-3000:]
    assert "joint CKA state" in job.logs and "per shard" in job.logs
    for name in ("wavlm", "fbank"):
        member = open_cache(f"{out}/{name}")
        assert member.manifest.complete and member.manifest.kept == len(kept)
    assert open_cache(f"{out}/wavlm").cka_states("joint-fbank")

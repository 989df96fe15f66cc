"""`ray job submit` of jobs/extract.py against a real local head (`ray start --head --block`): one model, then a joint group."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.ray_head import JobResult, submit_and_wait
from helpers.speech_corpus import build_corpus


def _submit_extract(tmp_path: Path, models: list[str], out_name: str, *extra: str) -> tuple[JobResult, list, str]:
    """Build an 8-utterance corpus and a tiny WavLM (``{wavlm}`` in ``models``), submit jobs/extract.py; (job, kept, out)."""
    from layerlab.models import tiny

    data = str(tmp_path / "data")
    kept = build_corpus(data, utterances=8, short_ids=(), nan_ids=())
    ckpt = tiny.build_s3prl_wavlm(tmp_path / "wavlm.pt", seed=1)
    out = str(tmp_path / out_name)
    args = [a for m in models for a in ("--model", m.format(wavlm=f"s3prl:wavlm_local:{ckpt}"))]
    job = submit_and_wait(tmp_path, ["python", "jobs/extract.py", *args, "--data", data, "--out", out, *extra, "--no-progress"], timeout_s=240)
    return job, kept, out


@pytest.mark.slow
def test_ray_job_submit_extract(tmp_path: Path) -> None:
    from layerlab.cache import open_cache

    job, kept, out = _submit_extract(tmp_path, ["{wavlm}"], "cache", "--tier", "both")
    assert job.ok, job.logs[-3000:]
    assert "complete" in job.logs
    cache = open_cache(out)
    assert cache.manifest.complete and cache.manifest.kept == len(kept)


@pytest.mark.slow
def test_ray_job_submit_joint_extract(tmp_path: Path) -> None:
    """A joint group through the same entry point and the same actor pool: one actor, two caches, one joint state."""
    from layerlab.cache import open_cache

    job, kept, out = _submit_extract(tmp_path, ["wavlm={wavlm}", "fbank"], "caches")
    assert job.ok, job.logs[-3000:]
    assert "joint CKA state" in job.logs and "per shard" in job.logs
    for name in ("wavlm", "fbank"):
        member = open_cache(f"{out}/{name}")
        assert member.manifest.complete and member.manifest.kept == len(kept)
    assert open_cache(f"{out}/wavlm").cka_states("joint-fbank")

"""Shared fixtures: one embedded Ray for the whole session, one moto S3 server, real audio paths."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
LIBRISPEECH_EXCERPT = SHARED_DATA / "librispeech-test-other-excerpt"

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DATA_EXECUTION_NO_PROGRESS_TIMEOUT_S", "120")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def librispeech_excerpt() -> Path:
    """The real LibriSpeech test-other excerpt shipped in ../shared/data (5 speakers x 10 utts)."""
    if not LIBRISPEECH_EXCERPT.is_dir():
        pytest.skip(f"shared data not found at {LIBRISPEECH_EXCERPT}")
    return LIBRISPEECH_EXCERPT


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """An embedded local Ray started once per test session and shut down at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",  # always a fresh embedded instance, never a cluster left by `ray start`
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": {"RAY_AUTH_MODE": "disabled"}},
        )
    try:
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.wait_for_min_actors_s = 120
    except Exception:  # pragma: no cover - ray.data optional in some tests
        pass
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 endpoint: moto's server on 127.0.0.1, with standard AWS env vars pointing at it."""
    from helpers.moto_s3 import moto_s3

    with moto_s3() as env:
        yield env["AWS_ENDPOINT_URL"]


@pytest.fixture()
def s3_bucket(s3_endpoint: str) -> Iterator[str]:
    """A fresh, empty bucket on the moto server; yields its ``s3://`` URL."""
    import uuid

    import boto3

    name = f"layerlab-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    try:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
    except ImportError:  # pragma: no cover
        pass
    yield f"s3://{name}"

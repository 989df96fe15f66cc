"""S3 mistakes (missing bucket, bad credentials) on any input or output URL: one line naming the URL, exit 2, before Ray starts.

Run against a real S3 endpoint (moto's server on 127.0.0.1); bad credentials are moto's IAM check rejecting the key.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from layerlab.cli import app

NOBUCKET = "s3://layerlab-no-such-bucket"
S3_BAD = [  # argv with {data} {cache} {out} {s3} (an existing bucket) placeholders; "creds": run with the key rejected
    (["extract", "--model", "fbank", "--data", f"{NOBUCKET}/data", "--out", "{out}"], False),
    (["extract", "--model", "fbank", "--data", "{data}", "--out", f"{NOBUCKET}/cache"], False),
    (["extract", "--model", "fbank", "--data", "{s3}/data", "--out", "{out}"], True),
    (["extract", "--model", "fbank", "--data", "{data}", "--out", "{s3}/cache"], True),
    (["cka", "--a", f"{NOBUCKET}/cache", "--out", "{out}"], False),
    (["cka", "--a", "{cache}", "--b", f"{NOBUCKET}/cache", "--out", "{out}"], False),
    (["cka", "--a", "{cache}", "--out", f"{NOBUCKET}/cka"], False),
    (["cka", "--a", "{s3}/cache", "--out", "{out}"], True),
    (["cka", "--a", "{cache}", "--out", "{s3}/cka"], True),
    (["cka", "--a", "{cache}", "--out", "{out}", "--on-ray", "--checkpoint", f"{NOBUCKET}/ckpt"], False),
    (["cache", "info", f"{NOBUCKET}/cache"], False),
    (["cache", "verify", "{s3}/cache"], True),
    (["corpus", "info", f"{NOBUCKET}/data"], False),
    (["corpus", "verify", "{s3}/data"], True),
    (["corpus", "synth", "--out", f"{NOBUCKET}/data", "--speakers", "4"], False),
    (["corpus", "synth", "--out", "{s3}/data", "--speakers", "4"], True),
    (["corpus", "import", "folder", "{data}", "--out", f"{NOBUCKET}/data"], False),
    (["corpus", "import", "folder", f"{NOBUCKET}/src", "--out", "{out}"], False),
    (["corpus", "import", "folder", "{s3}/src", "--out", "{out}"], True),
]


@contextlib.contextmanager
def rejected_credentials():
    """Every request is checked against moto's IAM, which knows no access key: the credentials are bad."""
    from moto.core.authorization import enable_iam_authentication

    with enable_iam_authentication():
        yield


@pytest.mark.parametrize(("argv", "creds"), S3_BAD, ids=[" ".join(a[:4]) + f" #{i}" for i, (a, _) in enumerate(S3_BAD)])
def test_s3_mistakes_end_in_one_line(argv, creds, s3_bucket, fbank_cache, aligned_corpus, tmp_path: Path) -> None:
    import ray

    out = tmp_path / "out"
    args = [a.format(data=aligned_corpus[0], cache=fbank_cache, out=out, s3=s3_bucket) for a in argv]
    s3_urls = [a for a in args if a.startswith("s3://")]
    ray_was_up = ray.is_initialized()  # a session fixture of an earlier test may hold one; the invocation must not start one
    with rejected_credentials() if creds else contextlib.nullcontext():
        result = CliRunner().invoke(app, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert any(lines[0].endswith(f"({u})") for u in s3_urls), lines  # the line names the S3 URL at fault
    assert ("access denied" if creds else "does not exist") in lines[0], lines
    assert "Traceback" not in result.output
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*")), "a failed invocation wrote output"
    assert ray.is_initialized() == ray_was_up, "a failed invocation started Ray"
    assert _keys(s3_bucket) == [], "a failed invocation wrote to the bucket"


def _keys(bucket_url: str) -> list[str]:
    import boto3

    listing = boto3.client("s3").list_objects_v2(Bucket=bucket_url.removeprefix("s3://"))
    return [o["Key"] for o in listing.get("Contents", [])]

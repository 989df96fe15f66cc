"""Storage layer: atomic writes, JSON documents, retries, URL handling on local, memory and S3."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerlab import storage


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    url = str(tmp_path / "a" / "b.bin")
    storage.atomic_write_bytes(url, b"one")
    storage.atomic_write_bytes(url, b"two")
    assert storage.read_bytes(url) == b"two"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.bin"]


def test_failed_local_then_upload_publishes_nothing(tmp_path: Path) -> None:
    url = str(tmp_path / "out.parquet")
    with pytest.raises(RuntimeError):
        with storage.atomic_local_then_upload(url) as tmp:
            tmp.write_bytes(b"half written")
            raise RuntimeError("crash mid-write")
    assert not Path(url).exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_upload_to_s3_publishes_nothing(s3_bucket: str) -> None:
    url = storage.join(s3_bucket, "x", "out.bin")
    with pytest.raises(RuntimeError):
        with storage.atomic_local_then_upload(url) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("crash")
    assert not storage.exists(url)
    with storage.atomic_local_then_upload(url) as tmp:
        tmp.write_bytes(b"complete")
    assert storage.read_bytes(url) == b"complete"


@pytest.mark.parametrize("scheme", ["local", "memory"])
def test_json_roundtrip_and_listing(scheme: str, tmp_path: Path) -> None:
    root = str(tmp_path) if scheme == "local" else "memory://layerlab-test-json"
    storage.write_json(storage.join(root, "doc.json"), {"b": 1, "a": [1, 2]})
    storage.atomic_write_bytes(storage.join(root, "z.parquet"), b"x")
    assert storage.read_json(storage.join(root, "doc.json")) == {"a": [1, 2], "b": 1}
    listed = storage.list_files(root, ".parquet")
    assert len(listed) == 1 and listed[0].endswith("z.parquet")
    assert storage.read_bytes(listed[0]) == b"x"


def test_missing_object_error_names_url(tmp_path: Path) -> None:
    url = str(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        storage.read_json(url)


def test_malformed_json_error_names_url(tmp_path: Path) -> None:
    url = str(tmp_path / "bad.json")
    Path(url).write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        storage.read_json(url)


def test_retries_transient_errors_then_succeeds() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("connection reset by peer")
        return "ok"

    assert storage.with_retries(flaky, what="flaky", base_delay=0.001) == "ok"
    assert len(calls) == 3


def test_permanent_errors_are_not_retried() -> None:
    calls = []

    def missing() -> None:
        calls.append(1)
        raise FileNotFoundError("gone")

    with pytest.raises(FileNotFoundError):
        storage.with_retries(missing, what="missing", base_delay=0.001)
    assert len(calls) == 1


def test_retries_give_up_after_attempts() -> None:
    calls = []

    def down() -> None:
        calls.append(1)
        raise TimeoutError("read timeout")

    with pytest.raises(TimeoutError):
        storage.with_retries(down, what="down", attempts=3, base_delay=0.001)
    assert len(calls) == 3


def test_s3_uses_endpoint_from_standard_env(s3_bucket: str) -> None:
    url = storage.join(s3_bucket, "deep", "doc.json")
    storage.write_json(url, {"k": "v"})
    assert storage.exists(url)
    assert storage.read_json(url) == {"k": "v"}
    assert storage.sha256_url(url) == __import__("hashlib").sha256(storage.read_bytes(url)).hexdigest()

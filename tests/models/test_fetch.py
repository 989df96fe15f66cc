"""Remote checkpoints are cached once and fetched again when the remote object changes (moto S3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerlab import storage
from layerlab.models.fetch import fetch_file


def test_a_changed_remote_checkpoint_is_fetched_again(s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "cache"))
    url = f"{s3_bucket}/models/ckpt.pt"
    storage.atomic_write_bytes(url, b"version one")
    first = fetch_file(url)
    assert first.read_bytes() == b"version one"
    assert fetch_file(url) == first and first.read_bytes() == b"version one"  # unchanged: the copy is used
    storage.atomic_write_bytes(url, b"version two, repaired")
    assert fetch_file(url).read_bytes() == b"version two, repaired"


def test_an_unreachable_remote_falls_back_to_the_cached_copy(s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "cache"))
    url = f"{s3_bucket}/models/offline.pt"
    storage.atomic_write_bytes(url, b"weights")
    copy = fetch_file(url)
    import fsspec

    fs = fsspec.filesystem("s3")
    monkeypatch.setattr(type(fs), "info", lambda self, path, **kw: (_ for _ in ()).throw(ConnectionError("offline")))
    assert fetch_file(url) == copy and copy.read_bytes() == b"weights"

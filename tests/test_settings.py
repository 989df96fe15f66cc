"""Settings records (one fingerprint and diff of keys for every command) and the folder checks of the artifact vocabulary."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerlab import artifacts, storage
from layerlab.settings import SettingsMismatch, check, clear_output, diff_keys, fingerprint, record


def test_fingerprint_ignores_key_order_and_tuple_spelling_and_diff_names_dotted_keys() -> None:
    a = {"lr": 0.1, "model": {"channels": (16, 16), "scale": 2}, "seed": 0}
    b = {"seed": 0, "model": {"scale": 2, "channels": [16, 16]}, "lr": 0.1}
    assert fingerprint(a) == fingerprint(b) and diff_keys(a, b) == []
    c = {"lr": 0.2, "model": {"channels": [32, 16], "scale": 2}, "seed": 0, "extra": 1}
    assert fingerprint(a) != fingerprint(c)
    assert diff_keys(a, c) == ["extra", "lr", "model.channels"]


def test_check_resumes_the_same_settings_refuses_others_and_allows_resumable_keys(tmp_path: Path) -> None:
    url = str(tmp_path / "settings.json")
    settings = {"config": {"lr": 0.1, "epochs": 1}, "data": "abc"}
    assert check(str(tmp_path), url, settings, "a run") == []  # no record yet
    storage.write_json(url, record(settings))
    assert check(str(tmp_path), url, settings, "a run") == []
    with pytest.raises(SettingsMismatch, match=r"holds a run made with other settings \(differing: config.lr, data\); use another --out, or --overwrite") as err:
        check(str(tmp_path), url, {"config": {"lr": 0.2, "epochs": 1}, "data": "xyz"}, "a run")
    assert err.value.keys == ["config.lr", "data"] and "\n" not in str(err.value)
    more = {"config": {"lr": 0.1, "epochs": 3}, "data": "abc"}
    assert check(str(tmp_path), url, more, "a run", resumable=("config.epochs",)) == ["config.epochs"]


def test_clear_output_keeps_dot_files_and_nothing_beside_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "tune" / "x").mkdir(parents=True)
    (out / "metrics.parquet").write_bytes(b"1")
    (out / ".lease").write_text("holder")
    (tmp_path / "beside.txt").write_text("keep")
    assert sorted(clear_output(str(out))) == ["metrics.parquet", "tune"]
    assert [p.name for p in out.iterdir()] == [".lease"] and (tmp_path / "beside.txt").exists()
    assert clear_output(str(tmp_path / "missing")) == []


def test_folder_entries_take_manifest_checksums_and_check_folder_finds_missing_resized_and_changed_files(tmp_path: Path) -> None:
    root = str(tmp_path)
    shard = artifacts.publish_bytes(root, "shards/a.parquet", b"shard bytes")
    storage.write_json(f"{root}/{artifacts.MANIFEST_NAME}", {"format": "x", "shards": [shard.model_dump()]})
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "tune").mkdir()
    (tmp_path / "tune" / "state.pt").write_bytes(b"internal")
    entries = artifacts.folder_entries(root, exclude=("tune",))
    assert [e.name for e in entries] == ["manifest.json", "shards/a.parquet", "summary.json"]
    assert entries[1].sha256 == shard.sha256
    assert artifacts.check_folder(root, entries, checksums=True) == []
    (tmp_path / "shards" / "a.parquet").write_bytes(b"shard bytez")  # same size, other content
    assert artifacts.check_folder(root, entries) == []  # sizes only: cheap
    assert "checksum mismatch" in artifacts.check_folder(root, entries, checksums=True)[0]
    (tmp_path / "shards" / "a.parquet").write_bytes(b"shard")  # truncated
    (tmp_path / "summary.json").unlink()
    problems = artifacts.check_folder(root, entries)
    assert problems == [f"{root}/shards/a.parquet: size 5 bytes, recorded 11", f"{root}/summary.json: missing"]

"""The foundation helpers that every stage shares: worker env, device choice, config loading, masked statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field

from layerlab.config import ConfigError, load_config
from layerlab.frames import masked_mean, masked_mean_std
from layerlab.runtime import pick_device, runtime_env, worker_env


def test_worker_env_forwards_object_store_settings(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    env = worker_env({"OMP_NUM_THREADS": "2"})
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000" and env["AWS_ACCESS_KEY_ID"] == "key" and env["OMP_NUM_THREADS"] == "2"
    assert "AWS_PROFILE" not in env
    assert runtime_env()["env_vars"]["AWS_ACCESS_KEY_ID"] == "key"


def test_pick_device() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            pick_device("cuda")


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_size: int = Field(8, ge=1)
    name: str = "x"


def test_load_config_yaml_overrides_and_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("batch_size: 4\nname: a\n")
    assert load_config(_Cfg, str(path), name="b", batch_size=None) == _Cfg(batch_size=4, name="b")
    path.write_text("batch_size: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(_Cfg, str(path))
    assert "\n" not in str(err.value) and "batch_size" in str(err.value) and str(path) in str(err.value)
    path.write_text("typo: 1\n")
    with pytest.raises(ConfigError, match="typo"):
        load_config(_Cfg, str(path))
    with pytest.raises(ConfigError, match="not found"):
        load_config(_Cfg, str(tmp_path / "missing.yaml"))


def test_masked_statistics_ignore_padding() -> None:
    rng = np.random.default_rng(0)
    h = torch.from_numpy(rng.normal(size=(3, 7, 4)).astype(np.float32))
    lengths = torch.tensor([7, 3, 1])
    h[1, 3:] = 1e6  # padding must not leak
    h[2, 1:] = -1e6
    mean, std = masked_mean_std(h, lengths)
    for b, n in enumerate(lengths.tolist()):
        ref = h[b, :n].double().numpy()
        np.testing.assert_allclose(mean[b].numpy(), ref.mean(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(std[b].numpy(), ref.std(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(masked_mean(h, lengths).numpy(), mean.numpy(), rtol=1e-6)
    h[1, 5, 0], h[2, 3, 2] = float("nan"), float("inf")  # non-finite padding (a model may leave it there) stays out too
    nan_mean, nan_std = masked_mean_std(h, lengths)
    np.testing.assert_array_equal(nan_mean.numpy(), mean.numpy())
    np.testing.assert_array_equal(nan_std.numpy(), std.numpy())

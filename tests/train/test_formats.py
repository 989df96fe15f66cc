"""models.formats: each format's writer output loads through ckpt: (dispatch on "format") and its native path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from layerlab.models import CheckpointError, load, tiny
from layerlab.models.formats import detect_format, read_ckpt_dict


def _same_outputs(a, b) -> None:
    wav = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    oa, ob = a(wav), b(wav)
    assert oa.names == ob.names
    for ha, hb in zip(oa.hidden, ob.hidden):
        torch.testing.assert_close(ha, hb)


def test_ecapa_writer_output_carries_its_format_and_loads_as_ckpt(tmp_path: Path) -> None:
    from layerlab.models.formats import ecapa

    url = str(tmp_path / "ecapa.pt")
    state = tiny.ecapa_state_dict(tiny.TINY_ECAPA, seed=3)
    ecapa.write(url, tiny.TINY_ECAPA, state, meta={"recipe": "supervised", "epoch": 2})
    read = ecapa.read(url)
    assert read.config == tiny.TINY_ECAPA and read.meta == {"recipe": "supervised", "epoch": 2}
    assert detect_format(read_ckpt_dict(url)) == "layerlab-ecapa-v1"
    model = load(f"ckpt:{url}", device="cpu")
    assert model.layer_names == ["block0", "block1", "block2", "block3", "mfa", "asp", "embedding"]
    torch.testing.assert_close(model.embedding_model.state_dict()["fc.conv.weight"], state["fc.conv.weight"])


@pytest.mark.parametrize("family", ["hubert", "wavlm"])
def test_s3prl_checkpoints_load_identically_as_ckpt_and_s3prl_local(tmp_path: Path, family: str) -> None:
    build = tiny.build_s3prl_hubert if family == "hubert" else tiny.build_s3prl_wavlm
    path = build(tmp_path / f"{family}.pt", seed=4)
    assert read_ckpt_dict(str(path))["format"] == f"s3prl-{family}"
    via_ckpt = load(f"ckpt:{path}", device="cpu")
    via_s3prl = load(f"s3prl:{family}_local:{path}", device="cpu")
    assert via_ckpt.layer_names == via_s3prl.layer_names == ["hidden_0", "hidden_1", "hidden_2"]
    assert via_ckpt.frame_rates == [50.0] * 3
    _same_outputs(via_ckpt, via_s3prl)


def test_s3prl_own_hubert_local_loader_accepts_the_written_file(tmp_path: Path) -> None:
    from s3prl.upstream.hubert.hubconf import hubert_local

    path = tiny.build_s3prl_hubert(tmp_path / "hubert.pt", seed=5)
    expert = hubert_local(ckpt=str(path))
    hidden = expert([torch.zeros(16000)])["hidden_states"]
    assert len(hidden) == 3 and hidden[0].shape == (1, 49, 32)


def test_hf_dir_loads_as_ckpt_with_its_marker(tmp_path: Path) -> None:
    from layerlab.models.formats import hf_dir

    directory = tiny.build_hf_wavlm(tmp_path / "hf", seed=6)
    assert hf_dir.read(str(directory))["format"] == "hf-dir"
    _same_outputs(load(f"ckpt:{directory}", device="cpu"), load(f"hf:{directory}", device="cpu"))


def test_foreign_checkpoints_are_recognised_by_keys_and_unknown_ones_refused(tmp_path: Path) -> None:
    path = tiny.build_s3prl_wavlm(tmp_path / "w.pt", seed=1)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["format"]  # as Microsoft / s3prl release it
    assert detect_format(ckpt) == "s3prl-wavlm"
    bad = tmp_path / "bad.pt"
    torch.save({"format": "someone-elses-v9", "weights": {}}, bad)
    with pytest.raises(CheckpointError, match="unknown format 'someone-elses-v9'"):
        load(f"ckpt:{bad}")
    odd = tmp_path / "odd.pt"
    torch.save({"state": {}}, odd)
    with pytest.raises(CheckpointError, match="no 'format' field"):
        load(f"ckpt:{odd}")

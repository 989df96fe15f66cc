"""The driver's loadable check on its cheap path (big checkpoints: mmap'd torch.load + format/keys, no model built)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from layerlab.models import preflight, tiny
from layerlab.models.errors import CheckpointError
from layerlab.models.formats import ecapa


def test_big_checkpoints_are_checked_by_format_and_keys_without_building(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(preflight, "FULL_LOAD_BYTES", 0)  # every checkpoint counts as big here
    other = dict(tiny.TINY_ECAPA, lin_neurons=int(tiny.TINY_ECAPA["lin_neurons"]) + 4)
    misfit = ecapa.write(str(tmp_path / "misfit.pt"), dict(tiny.TINY_ECAPA), tiny.ecapa_state_dict(other, 0))
    preflight.check_loadable(f"ckpt:{misfit}")  # right format and keys: only a full build would see the misfit weights
    hubert = tiny.build_s3prl_hubert(tmp_path / "hubert.pt", seed=0)
    preflight.check_loadable(f"s3prl:hubert_local:{hubert}")
    with pytest.raises(CheckpointError, match="hubert.pt: wrong format; expected keys \\['cfg', 'model'\\]"):
        preflight.check_loadable(f"s3prl:wavlm_local:{hubert}")
    torch.save({"layer.weight": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="plain.pt: no 'format' field"):
        preflight.check_loadable(f"ckpt:{tmp_path / 'plain.pt'}")
    bundle = tiny.build_speechbrain_ecapa(tmp_path / "sb", seed=0)
    preflight.check_loadable(f"speechbrain:{bundle}", trust_remote_code=True)
    torch.save([1, 2, 3], bundle / "embedding_model.ckpt")
    with pytest.raises(CheckpointError, match="embedding_model.ckpt is not a state_dict"):
        preflight.check_loadable(f"speechbrain:{bundle}", trust_remote_code=True)


def test_small_checkpoints_are_built_in_full(tmp_path: Path) -> None:
    other = dict(tiny.TINY_ECAPA, lin_neurons=int(tiny.TINY_ECAPA["lin_neurons"]) + 4)
    misfit = ecapa.write(str(tmp_path / "misfit.pt"), dict(tiny.TINY_ECAPA), tiny.ecapa_state_dict(other, 0))
    with pytest.raises(CheckpointError, match="misfit.pt: weights do not fit"):
        preflight.check_loadable(f"ckpt:{misfit}")

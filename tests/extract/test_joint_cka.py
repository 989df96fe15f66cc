"""Joint side-output core: one accumulator fed by two models on the same batches equals CKA from their separate frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.speech_corpus import _voice
from layerlab.extract.joint_cka import check_sample_rates, member, new_joint_accumulator, update_joint
from layerlab.models.batching import pad_batch


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from layerlab.models import load, tiny

    path = tiny.build_s3prl_wavlm(tmp_path_factory.mktemp("joint") / "wavlm.pt", seed=2)
    return load("fbank", "cpu"), load(f"s3prl:wavlm_local:{path}", "cpu")


def test_joint_state_equals_cka_of_the_two_models_frames_computed_separately(models):
    from layerlab.cka import FeatureCKA

    fbank, wavlm = models
    assert check_sample_rates({"fbank": fbank.sample_rate, "wavlm": wavlm.sample_rate}) == 16000
    a, b = member("fbank", fbank), member("wavlm", wavlm)
    assert set(a.frame_rates_hz) == {100.0} and set(b.frame_rates_hz) == {50.0}  # alignment pools fbank 2:1
    rng = np.random.default_rng(0)
    wavs = [_voice(rng, s, i % 3).astype(np.float32) for i, s in enumerate([0.7, 1.1, 0.9, 1.4, 0.6])]
    joint = new_joint_accumulator(a, b)
    ref = FeatureCKA(a.dims, b.dims, mode="joint", frame_rates_hz=a.frame_rates_hz + b.frame_rates_hz)
    with torch.no_grad():
        for wav in wavs:  # the same decoded utterance goes to both models (joint extraction)
            out_a, out_b = fbank(*pad_batch([wav])), wavlm(*pad_batch([wav]))
            update_joint(joint, a, out_a, b, out_b)
            # the frames-tier path: each model's valid frames stored per utterance, read back and joined by id
            fa = [out_a.hidden[i][0, : int(out_a.lengths[i][0])].numpy() for i in a.indices]
            fb = [out_b.hidden[i][0, : int(out_b.lengths[i][0])].numpy() for i in b.indices]
            ref.update([f[None] for f in fa + fb], [torch.tensor([f.shape[0]]) for f in fa + fb])
    got, want = np.asarray(joint.compute()), np.asarray(ref.compute())
    la = len(a.dims)
    assert got.shape == (la + len(b.dims),) * 2
    assert np.abs(got - want).max() <= 1e-6
    cross = got[:la, la:]
    assert np.all((cross > 0) & (cross < 1))  # a real cross block, not trivially 0 or 1


def test_models_needing_different_sample_rates_are_refused():
    with pytest.raises(ValueError, match="different sample rates"):
        check_sample_rates({"a": 16000, "b": 8000})

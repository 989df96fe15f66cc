"""Random-initialisation controls: the model's architecture (and its layers) with seeded random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerlab.models import UnknownModelSpec, load
from layerlab.models.random_init import random_spec


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from layerlab.models import tiny

    root = tmp_path_factory.mktemp("random_init")
    return {
        "s3prl_hubert": f"s3prl:hubert_local:{tiny.build_s3prl_hubert(root / 'hubert.pt', seed=1)}",
        "s3prl_wavlm": f"s3prl:wavlm_local:{tiny.build_s3prl_wavlm(root / 'wavlm.pt', seed=1)}",
        "layerlab_ecapa": f"ckpt:{tiny.build_layerlab_ecapa(str(root / 'ecapa.pt'), seed=1)}",
        "hf_wavlm": f"hf:{tiny.build_hf_wavlm(root / 'hf_wavlm', seed=1)}",
        "speechbrain_ecapa": f"speechbrain:{tiny.build_speechbrain_ecapa(root / 'sb_ecapa', seed=1)}",
        "ge2e": "ge2e",
    }


@pytest.mark.parametrize("name", ["s3prl_hubert", "s3prl_wavlm", "layerlab_ecapa", "hf_wavlm", "speechbrain_ecapa", "ge2e"])
def test_control_has_the_layers_and_fresh_seeded_weights(specs, name):
    spec = specs[name]
    wavs = torch.tensor(np.random.default_rng(0).normal(0, 0.1, size=(2, 16000)), dtype=torch.float32)
    lengths = torch.tensor([16000, 12000])
    model = load(spec, device="cpu", trust_remote_code=True)  # the speechbrain bundle's hyperparams.yaml is HyperPyYAML
    control = load(random_spec(spec, seed=3), device="cpu", trust_remote_code=True)
    again = load(f"random:seed=3:{spec}", device="cpu", trust_remote_code=True)
    other = load(f"random:seed=4:{spec}", device="cpu", trust_remote_code=True)
    assert control.spec == f"random:seed=3:{spec}" and control.random_init["control_of_spec"] == spec
    assert control.layer_names == model.layer_names and control.dims == model.dims and control.frame_rates == model.frame_rates
    out, c, c2, c4 = (m(wavs, lengths) for m in (model, control, again, other))
    for k, layer in enumerate(model.layer_names):
        assert c.hidden[k].shape == out.hidden[k].shape and torch.equal(c.lengths[k], out.lengths[k])
        assert torch.equal(c.hidden[k], c2.hidden[k]), f"{layer}: same seed, different values"
        assert not torch.allclose(c.hidden[k], out.hidden[k]), f"{layer}: the control kept the model's values"
        assert not torch.allclose(c.hidden[k], c4.hidden[k]), f"{layer}: another seed gave the same values"
    trained = dict(model.named_parameters())
    kept = [n for n, p in control.named_parameters() if p.numel() > 1 and p.unique().numel() > 1 and torch.equal(p, trained[n])]
    assert not kept, f"parameters left as in the checkpoint: {kept}"


def test_default_seed_is_zero():
    assert torch.equal(load("random:ge2e", device="cpu").lstms[0].weight_ih_l0, load("random:seed=0:ge2e", device="cpu").lstms[0].weight_ih_l0)


@pytest.mark.parametrize("bad", ["random:fbank", "random:mfcc", "random:planted", "random:seed=2:planted:seed=1",
                                 "random:seed=x:ge2e", "random:seed=-1:ge2e", "random:depth=2:ge2e", "random:random:ge2e",
                                 "random:", "random:seed=1:", "random:nosuch:thing"])
def test_bad_control_specs_are_one_error_line(bad):
    with pytest.raises(UnknownModelSpec) as err:
        load(bad, device="cpu")
    assert len(str(err.value).splitlines()) == 1


def test_a_control_of_a_missing_checkpoint_fails_on_the_driver(tmp_path):
    from layerlab.models.registry import check_spec

    with pytest.raises(UnknownModelSpec) as err:
        check_spec(f"random:seed=1:ckpt:{tmp_path / 'missing.pt'}")
    assert "not found" in str(err.value) and len(str(err.value).splitlines()) == 1

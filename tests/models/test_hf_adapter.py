"""transformers adapter: same hidden states as the HF feature extractor + model; attention-mask handling."""

from __future__ import annotations

import pytest
import torch

from layerlab.models import CheckpointError, load
from layerlab.models import tiny


@pytest.fixture(scope="module")
def hf_group(tiny_dir):
    return tiny.build_hf_wavlm(tiny_dir / "hf_group", seed=7, feat_extract_norm="group")


@pytest.fixture(scope="module")
def hf_layer(tiny_dir):
    return tiny.build_hf_wavlm(tiny_dir / "hf_layer", seed=8, feat_extract_norm="layer")


def _reference(path, wavs_np, attention: bool):
    from transformers import Wav2Vec2FeatureExtractor, WavLMModel

    fe = Wav2Vec2FeatureExtractor.from_pretrained(path)
    model = WavLMModel.from_pretrained(path).eval()
    inputs = fe(wavs_np, sampling_rate=16000, padding=True, return_tensors="pt", return_attention_mask=attention)
    with torch.no_grad():
        out = model(inputs.input_values, attention_mask=inputs.get("attention_mask"), output_hidden_states=True)
    return out.hidden_states


def test_group_norm_model_matches_hf_per_utterance(hf_group, real_wavs):
    model = load(f"hf:{hf_group}")
    assert model.use_attention_mask is False and model.padding_invariant is False
    assert model.layer_names == ["hidden_0", "hidden_1", "hidden_2"] and model.frame_rates == [50.0] * 3
    for wav in real_wavs:
        ours = model(torch.from_numpy(wav)[None])
        ref = _reference(hf_group, [wav], attention=False)
        assert ours.lengths[0].item() == ref[0].shape[1] == (len(wav) - 400) // 320 + 1
        for a, b in zip(ours.hidden, ref):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_layer_norm_model_matches_hf_batched_with_attention_mask(hf_layer, real_wavs, real_batch):
    model = load(f"hf:{hf_layer}")
    assert model.use_attention_mask is True and model.padding_invariant is True
    out = model(*real_batch)
    ref = _reference(hf_layer, real_wavs, attention=True)
    for i, wav in enumerate(real_wavs):
        n = int(out.lengths[0][i])
        assert n == (len(wav) - 400) // 320 + 1
        for a, b in zip(out.hidden, ref):
            torch.testing.assert_close(a[i, :n], b[i, :n], atol=1e-5, rtol=0)
    # padding-invariant: the shortest utterance alone gives the same valid frames
    alone = model(torch.from_numpy(real_wavs[2])[None])
    n = int(out.lengths[0][2])
    for a, b in zip(out.hidden, alone.hidden):
        torch.testing.assert_close(a[2, :n], b[0], atol=1e-4, rtol=0)


def test_hf_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load(f"hf:{tmp_path / 'no_such_dir'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load(f"hf:{tmp_path / 'empty'}")
    text = tmp_path / "text_model"
    text.mkdir()
    (text / "config.json").write_text('{"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 1, "intermediate_size": 8}')
    with pytest.raises(CheckpointError, match="model_type 'bert' is not a supported speech encoder"):
        load(f"hf:{text}")


def test_hub_id_not_in_the_offline_cache(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="hf model layerlab-test/no-such-model: cannot load its config"):
        load("hf:layerlab-test/no-such-model")

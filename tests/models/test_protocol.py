"""The LayeredModel protocol: spec parsing, input validation, sample-rate errors, batching, lazy imports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from layerlab.models import AudioInputError, UnknownModelSpec, load, parse_spec
from layerlab.models.audio import read_audio
from layerlab.models.batching import extract_all, length_buckets, pad_batch, plan_batches


@pytest.fixture(scope="module")
def fbank():
    return load("fbank", device="cpu")


@pytest.mark.parametrize(
    "spec,match",
    [
        ("wav2vec:foo", r"unknown model spec 'wav2vec:foo': prefix 'wav2vec' is not one of"),
        ("", "non-empty string"),
        ("ge2e:extra", "'ge2e' takes no argument"),
        ("hf:", "'hf' needs an argument"),
        ("speechbrain", "'speechbrain' needs an argument"),
    ],
)
def test_bad_specs_are_named_in_the_error(spec, match):
    with pytest.raises(UnknownModelSpec, match=match):
        load(spec)


def test_parse_spec_keeps_urls_with_colons():
    assert parse_spec("s3prl:wavlm_local:s3://bucket/ckpt.pt") == ("s3prl", "wavlm_local:s3://bucket/ckpt.pt")
    assert parse_spec("ckpt:gs://b/x.pt") == ("ckpt", "gs://b/x.pt")


def test_wrong_sample_rate_file_and_tensor(tmp_path, fbank):
    import soundfile as sf

    path = tmp_path / "eight_khz.wav"
    sf.write(path, np.zeros(8000, dtype="float32"), 8000)
    with pytest.raises(AudioInputError, match=r"eight_khz\.wav: sample rate 8000 Hz, but the model expects 16000 Hz"):
        read_audio(path, fbank.sample_rate)
    with pytest.raises(AudioInputError, match="fbank: audio at 8000 Hz but the model expects 16000 Hz"):
        fbank(torch.zeros(1, 8000), sample_rate=8000)
    bad = tmp_path / "not_audio.flac"
    bad.write_bytes(b"nope")
    with pytest.raises(AudioInputError, match=r"not_audio\.flac: cannot read audio"):
        read_audio(bad)


def test_malformed_batches(fbank):
    with pytest.raises(AudioInputError, match=r"2-D \[B, S\]"):
        fbank(torch.zeros(16000))
    with pytest.raises(AudioInputError, match="floating point"):
        fbank(torch.zeros(1, 16000, dtype=torch.int16))
    with pytest.raises(AudioInputError, match="exceeds the padded size"):
        fbank(torch.zeros(2, 16000), torch.tensor([16000, 16001]))
    with pytest.raises(AudioInputError, match="2 lengths for a batch of 1"):
        fbank(torch.zeros(1, 16000), torch.tensor([16000, 100]))
    with pytest.raises(AudioInputError, match="has 100 samples; the model needs at least 400"):
        fbank(torch.zeros(2, 16000), torch.tensor([16000, 100]))


def test_frozen_eval_no_grad(tiny_dir, real_batch):
    from layerlab.models import tiny

    model = load(f"ckpt:{tiny.build_layerlab_ecapa(str(tiny_dir / 'proto_ecapa.pt'))}")
    model.train()
    assert not model.training and not any(m.training for m in model.modules())
    assert all(not p.requires_grad for p in model.parameters())
    out = model(*real_batch)
    assert all(not h.requires_grad for h in out.hidden)
    assert model.device == torch.device("cpu") and model.spec.startswith("ckpt:")


def test_pad_batch_and_unpad(real_wavs, fbank):
    wavs, lengths = pad_batch(real_wavs)
    assert wavs.shape == (3, 48000) and lengths.tolist() == [48000, 35200, 24000]
    assert torch.count_nonzero(wavs[2, 24000:]) == 0
    out = fbank(wavs, lengths)
    assert [t.shape for t in out.unpad(2)] == [(1 + (24000 - 400) // 160, 240)]
    with pytest.raises(ValueError, match="waveform 0 must be 1-D"):
        pad_batch([np.zeros((2, 100))])


def test_length_buckets_cover_every_index_once_and_respect_limits():
    rng = np.random.default_rng(0)
    lengths = rng.integers(8000, 160000, size=101).tolist()
    batches = length_buckets(lengths, max_batch_size=8, max_batch_samples=600000, max_ratio=1.3)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(101))
    for b in batches:
        ls = [lengths[i] for i in b]
        assert len(b) <= 8 and max(ls) * len(b) <= 600000 and max(ls) <= 1.3 * min(ls)
        assert ls == sorted(ls, reverse=True)
    assert plan_batches(lengths[:5], "unbatched") == [[0], [1], [2], [3], [4]]
    assert plan_batches(lengths[:5], "batched", batch_size=2) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError, match="unknown batching mode 'greedy'"):
        plan_batches(lengths, "greedy")


def test_extract_all_modes_agree_for_a_padding_invariant_model(fbank, real_wavs):
    assert fbank.padding_invariant
    modes = [extract_all(fbank, real_wavs, mode=m, batch_size=2) for m in ("batched", "bucketed", "unbatched")]
    for per_mode in modes[1:]:
        for a, b in zip(modes[0], per_mode):
            torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=0)


def test_adapters_are_imported_lazily():
    code = (
        "import sys, layerlab.models as m; m.load('fbank'); "
        "heavy = [k for k in ('s3prl', 'speechbrain', 'transformers', 'resemblyzer', 'librosa') if k in sys.modules]; "
        "adapters = [k for k in sys.modules if k.startswith('layerlab.models.') and k.endswith('_adapter')]; "
        "print(heavy, adapters)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[] []", out

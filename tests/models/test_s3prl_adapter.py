"""s3prl adapter: hidden states equal S3PRLUpstream's on tiny real-format checkpoints; padding behaviour."""

from __future__ import annotations

import random

import pytest
import torch

from layerlab.models import CheckpointError, UnknownModelSpec, load
from layerlab.models import tiny
from layerlab.models.batching import pad_batch


@pytest.fixture(scope="module")
def wavlm_base_like(tiny_dir):
    return tiny.build_s3prl_wavlm(tiny_dir / "wavlm_default.pt", seed=1, extractor_mode="default")


@pytest.fixture(scope="module")
def wavlm_large_like(tiny_dir):
    return tiny.build_s3prl_wavlm(tiny_dir / "wavlm_ln.pt", seed=2, extractor_mode="layer_norm", normalize=True)


@pytest.fixture(scope="module")
def hubert_ckpt(tiny_dir):
    return tiny.build_s3prl_hubert(tiny_dir / "hubert.pt", seed=3)


def _s3prl_reference(name: str, path, wavs, lengths):
    from s3prl.nn import S3PRLUpstream

    upstream = S3PRLUpstream(name, path_or_url=str(path))
    upstream.eval()
    with torch.no_grad():
        return upstream(wavs, lengths)


@pytest.mark.parametrize(
    "family,fixture", [("wavlm", "wavlm_base_like"), ("wavlm", "wavlm_large_like"), ("hubert", "hubert_ckpt")]
)
def test_hidden_states_equal_s3prl_upstream(family, fixture, request, real_batch):
    path = request.getfixturevalue(fixture)
    wavs, lengths = real_batch
    model = load(f"s3prl:{family}_local:{path}")
    ours = model(wavs, lengths)
    ref_hs, ref_lens = _s3prl_reference(f"{family}_local", path, wavs, lengths)
    assert len(ours.hidden) == len(ref_hs) == 3
    assert ours.names == ["hidden_0", "hidden_1", "hidden_2"]
    for h, n, rh, rn in zip(ours.hidden, ours.lengths, ref_hs, ref_lens):
        assert torch.equal(n.cpu(), rn.cpu())
        torch.testing.assert_close(h, rh, atol=1e-5, rtol=0)
    assert ours.lengths[0].tolist() == [(int(n) - 1) // 320 + 1 for n in lengths]
    assert model.dims == [32, 32, 32] and model.frame_rates == [50.0] * 3
    assert model.utterance_level == [False] * 3 and model.padding_invariant is False


def test_loading_leaves_the_callers_rng_streams_untouched(wavlm_base_like):
    torch.manual_seed(1234)
    random.seed(1234)
    expected = (torch.rand(3), random.random())
    torch.manual_seed(1234)
    random.seed(1234)
    load(f"s3prl:wavlm_local:{wavlm_base_like}")  # random init happens before the weights load
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def test_groupnorm_model_changes_every_frame_when_padded(wavlm_base_like, real_wavs):
    """WavLM/HuBERT Base (GroupNorm over time): padding a short utterance changes all its frames."""
    model = load(f"s3prl:wavlm_local:{wavlm_base_like}")
    short = torch.as_tensor(real_wavs[2])[None]
    alone = model(short).hidden[1][0]
    batched = model(*pad_batch([real_wavs[2], real_wavs[0]]))  # short one padded to the long one
    n = int(batched.lengths[1][0])
    assert n == alone.shape[0]
    diff = (batched.hidden[1][0, :n] - alone).abs().amax(dim=1)
    assert float(diff[:5].min()) > 1e-3  # even the first frames move


def test_layernorm_model_changes_mostly_last_frames(wavlm_large_like, real_wavs):
    """layer_norm extractors (Large): hidden_0 changes only in the last frames; transformer layers
    change slightly everywhere (partially padded frames are attended to) and strongly at the end."""
    model = load(f"s3prl:wavlm_local:{wavlm_large_like}")
    alone = model(torch.as_tensor(real_wavs[2])[None]).hidden
    batched = model(*pad_batch([real_wavs[2], real_wavs[0]])).hidden
    n = alone[0].shape[1]
    diffs = [(b[0, :n] - a[0]).abs().amax(dim=1) for a, b in zip(alone, batched)]
    assert float(diffs[0][:-8].max()) <= 1e-5
    assert all(float(d[-3:].max()) > 1e-2 for d in diffs)
    assert all(float(d[:-8].max()) < 1e-2 for d in diffs)
    assert model.padding_invariant is False


def test_wrong_family_checkpoint_is_a_clear_error(hubert_ckpt):
    with pytest.raises(CheckpointError, match=r"wrong format; expected keys \['cfg', 'model'\]"):
        load(f"s3prl:wavlm_local:{hubert_ckpt}")


def test_missing_and_unreadable_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load(f"s3prl:wavlm_local:{tmp_path / 'nope.pt'}")
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"this is not a torch file")
    with pytest.raises(CheckpointError, match=r"garbage\.pt: not a readable torch checkpoint"):
        load(f"s3prl:hubert_local:{bad}")


def test_pickled_object_is_refused_by_weights_only(tmp_path):
    evil = tmp_path / "object.pt"
    torch.save({"cfg": {"encoder_layers": 1}, "model": torch.nn.Linear(2, 2)}, evil)  # a pickled module
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load(f"s3prl:wavlm_local:{evil}")


def test_weights_that_do_not_fit_the_config(tmp_path, wavlm_base_like):
    ckpt = torch.load(wavlm_base_like, weights_only=True)
    ckpt["cfg"]["encoder_embed_dim"] = 48
    bad = tmp_path / "mismatch.pt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match="weights do not fit its config"):
        load(f"s3prl:wavlm_local:{bad}")


def test_unknown_s3prl_names():
    with pytest.raises(UnknownModelSpec, match="unknown s3prl model 's3prl:wavlm_huge'.*s3prl:wavlm_base_plus"):
        load("s3prl:wavlm_huge")
    with pytest.raises(UnknownModelSpec, match="unknown s3prl model"):
        load("s3prl:apc")
    with pytest.raises(UnknownModelSpec, match="needs a checkpoint URL"):
        load("s3prl:wavlm_local")


def test_local_checkpoint_from_s3_url(s3_bucket, wavlm_base_like, tmp_path, monkeypatch, real_batch):
    from layerlab.storage import atomic_write_bytes

    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "cache"))
    url = f"{s3_bucket}/models/wavlm tiny.pt"
    atomic_write_bytes(url, wavlm_base_like.read_bytes())
    remote = load(f"s3prl:wavlm_local:{url}")
    local = load(f"s3prl:wavlm_local:{wavlm_base_like}")
    for a, b in zip(remote(*real_batch).hidden, local(*real_batch).hidden):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match=r"s3prl wavlm checkpoint s3://.*/models/absent\.pt: does not exist"):
        load(f"s3prl:wavlm_local:{s3_bucket}/models/absent.pt")


def test_hub_checkpoint_urls_are_the_ones_s3prl_downloads() -> None:
    """The driver's offline check looks for these URLs in s3prl's download cache: they must be s3prl's own."""
    import importlib.util
    from pathlib import Path

    from layerlab.models.s3prl_adapter import FAMILIES, HUB_NAMES, HUB_URLS

    assert set(HUB_URLS) == set(HUB_NAMES)
    for name, url in HUB_URLS.items():
        family = next(f for f in FAMILIES if name.startswith(f))
        source = Path(importlib.util.find_spec(FAMILIES[family]).origin).read_text()
        body = source[source.index(f"def {name}("):]
        end = body.find("\ndef ", 1)
        body = body if end < 0 else body[:end]
        assert f'"{url}"' in body, (name, url)

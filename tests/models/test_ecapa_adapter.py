"""ECAPA-TDNN: speechbrain bundles load offline and match EncoderClassifier; the layerlab ckpt format."""

from __future__ import annotations

import pytest
import torch

from layerlab.models import CheckpointError, load
from layerlab.models import tiny
from layerlab.models.formats import ecapa as ecapa_format


@pytest.fixture(scope="module")
def sb_bundle(tiny_dir):
    return tiny.build_speechbrain_ecapa(tiny_dir / "sb_ecapa", seed=5)


@pytest.fixture(scope="module")
def sb_model(sb_bundle):
    return load(f"speechbrain:{sb_bundle}", device="cpu", trust_remote_code=True)


def test_layers_dims_and_lengths(sb_model, real_batch):
    wavs, lengths = real_batch
    out = sb_model(wavs, lengths)
    assert out.names == ["block0", "block1", "block2", "block3", "mfa", "asp", "embedding"]
    assert sb_model.dims == [32, 32, 32, 32, 96, 192, 24]
    assert sb_model.frame_rates == [100.0] * 5 + [None, None]
    assert sb_model.utterance_level == [False] * 5 + [True, True]
    assert sb_model.padding_invariant is False
    for h, n, d in zip(out.hidden, out.lengths, sb_model.dims):
        assert h.shape[0] == 3 and h.shape[2] == d
    assert out.lengths[0].tolist() == [int(n) // 160 + 1 for n in lengths]  # speechbrain Fbank, centred
    assert out.hidden[0].shape[1] == wavs.shape[1] // 160 + 1
    assert out.lengths[-1].tolist() == [1, 1, 1] and out.hidden[-1].shape[1] == 1


def test_embedding_equals_encoder_classifier(sb_bundle, sb_model, real_batch, tmp_path):
    from speechbrain.inference.speaker import EncoderClassifier

    wavs, lengths = real_batch
    classifier = EncoderClassifier.from_hparams(
        source=str(sb_bundle), savedir=str(tmp_path / "sb_save"),
        overrides={"pretrained_path": str(sb_bundle)}, run_opts={"device": "cpu"},
    )
    ref = classifier.encode_batch(wavs, lengths.float() / wavs.shape[1])
    ours = sb_model(wavs, lengths).hidden[-1]
    assert ref.shape == ours.shape == (3, 1, 24)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    # the weights really came from embedding_model.ckpt (not two equal random inits)
    saved = torch.load(sb_bundle / "embedding_model.ckpt", weights_only=True)
    loaded = sb_model.embedding_model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())


def test_layerlab_ckpt_equals_bundle_with_same_weights(sb_model, real_batch, tmp_path):
    path = tiny.build_layerlab_ecapa(str(tmp_path / "ecapa.pt"), seed=5)
    model = load(f"ckpt:{path}", device="cpu")
    wavs, lengths = real_batch
    for a, b in zip(model(wavs, lengths).hidden, sb_model(wavs, lengths).hidden):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_layerlab_ckpt_from_remote_url_is_cached(tmp_path, monkeypatch, real_batch):
    import fsspec

    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "cache"))
    url = "memory://layerlab-test/ecapa/ckpt.pt"
    ecapa_format.write(url, tiny.TINY_ECAPA, tiny.ecapa_state_dict(tiny.TINY_ECAPA, seed=9))
    model = load(f"ckpt:{url}")
    assert list((tmp_path / "cache").rglob("ckpt.pt"))
    fsspec.filesystem("memory").rm("/layerlab-test", recursive=True)
    again = load(f"ckpt:{url}")  # served from the cache now
    wavs, lengths = real_batch
    torch.testing.assert_close(model(wavs, lengths).hidden[-1], again(wavs, lengths).hidden[-1])


def test_layerlab_ckpt_errors(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing\.pt: does not exist"):
        load(f"ckpt:{tmp_path / 'missing.pt'}")
    other = tmp_path / "other.pt"
    torch.save({"format": "someone-else-v3", "weights": {}}, other)
    with pytest.raises(CheckpointError, match=r"unknown format 'someone-else-v3'; known: layerlab-ecapa-v1"):
        load(f"ckpt:{other}")
    plain = tmp_path / "plain_state_dict.pt"
    torch.save(tiny.ecapa_state_dict(tiny.TINY_ECAPA), plain)
    with pytest.raises(CheckpointError, match=r"no 'format' field and keys .* match no known format"):
        load(f"ckpt:{plain}")
    mismatch = tmp_path / "mismatch.pt"
    state = tiny.ecapa_state_dict(tiny.TINY_ECAPA)
    torch.save(ecapa_format.to_dict(dict(tiny.TINY_ECAPA, lin_neurons=48), state), mismatch)
    with pytest.raises(CheckpointError, match="weights do not fit the ECAPA_TDNN config"):
        load(f"ckpt:{mismatch}")
    bad_cfg = tmp_path / "bad_cfg.pt"
    torch.save({"format": ecapa_format.FORMAT, "config": {"n_mels": 80, "colour": "red"}, "state_dict": state}, bad_cfg)
    with pytest.raises(CheckpointError, match=r"unknown keys \['colour'\]"):
        load(f"ckpt:{bad_cfg}")


def test_speechbrain_bundle_errors(tmp_path, sb_bundle):
    with pytest.raises(CheckpointError, match="does not exist"):
        load(f"speechbrain:{tmp_path / 'nobundle'}")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "hyperparams.yaml").write_text((sb_bundle / "hyperparams.yaml").read_text())
    with pytest.raises(CheckpointError, match="missing embedding_model.ckpt"):
        load(f"speechbrain:{partial}")
    (partial / "embedding_model.ckpt").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="embedding_model.ckpt: not a readable torch checkpoint"):
        load(f"speechbrain:{partial}", trust_remote_code=True)


def test_padding_changes_last_frames_and_slightly_the_embedding(sb_model, real_wavs):
    """ECAPA is not padding-invariant: block0's last frames (reflect padding at the batch end) change
    strongly, deeper blocks and the pooled layers change slightly (length-masked statistics)."""
    from layerlab.models.batching import pad_batch

    alone = sb_model(torch.from_numpy(real_wavs[2])[None]).hidden
    batched = sb_model(*pad_batch([real_wavs[2], real_wavs[0]])).hidden
    n = alone[0].shape[1]
    block0 = (batched[0][0, :n] - alone[0][0]).abs().amax(dim=1)
    assert float(block0[:-3].max()) <= 1e-4 and float(block0[-2:].max()) > 1e-1
    emb_alone, emb_batched = alone[-1][0, 0], batched[-1][0, 0]
    cos = torch.nn.functional.cosine_similarity(emb_alone, emb_batched, dim=0)
    assert 0.99 < float(cos) and not torch.allclose(emb_alone, emb_batched, atol=1e-5)

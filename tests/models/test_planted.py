"""The planted known-answer model: layers of known content, recovered by the real extraction + CKA pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.cache_builder import build_cache_inline
from helpers.speech_corpus import build_corpus

from layerlab.models import UnknownModelSpec, load
from layerlab.models.planted import LAYERS, PlantedModel


@pytest.fixture(scope="module")
def planted_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A frames + pooled cache of the planted model over a small synthetic-speech corpus (48 utterances of 3 speakers, several shards)."""
    base = tmp_path_factory.mktemp("planted")
    data = str(base / "data")
    build_corpus(data, utterances=48, short_ids=(), nan_ids=(), max_shard_bytes=150_000)
    return build_cache_inline(load("planted:seed=0", device="cpu"), data, str(base / "cache"), tier="both")


def test_spec_options_and_errors():
    model = load("planted", device="cpu")
    assert model.layer_names == list(LAYERS) and model.dims == [40, 40, 40, 120] and model.planted
    assert model.expect["pr_best"] == "content" and model.expect["sid_best"] == "speaker"
    assert ["noise", "content"] in model.expect["cka_zero_pairs"] and model.expect["content_deepest"]
    assert PlantedModel.EXPECT == model.expect  # the class attribute the study reads without building the model
    flipped = load("planted:seed=2,order=content+mix+speaker+noise", device="cpu")
    assert flipped.layer_names == ["content", "mix", "speaker", "noise"] and not flipped.expect["content_deepest"]
    for bad in ("planted:seed=x", "planted:depth=3", "planted:order=content+noise", "planted:seed=-1", "planted:seed"):
        with pytest.raises(UnknownModelSpec) as err:
            load(bad, device="cpu")
        assert len(str(err.value).splitlines()) == 1 and bad in str(err.value)


def test_layers_are_what_was_planted():
    rng = np.random.default_rng(0)
    wavs = torch.tensor(rng.normal(0, 0.1, size=(2, 16000)), dtype=torch.float32)
    model = load("planted:seed=0", device="cpu")
    out = model(wavs, torch.tensor([16000, 9000]))
    noise, speaker, mix, content = (out.layer(n)[0] for n in LAYERS)
    n1 = int(out.lengths[0][1])
    assert torch.allclose(speaker[1, :n1], speaker[1, :1].expand(n1, -1))  # one vector per utterance, on every frame
    assert content[1, :n1].mean(0).abs().max() < 0.2 and abs(float(content[1, :n1].std(0).mean()) - 1) < 0.05
    alone = model(wavs[1:, :9000])  # the same utterance alone: the same noise draw, the same layers
    for k in range(4):
        assert torch.allclose(alone.hidden[k][0], out.hidden[k][1, :n1], atol=1e-5)
    other_seed = load("planted:seed=1", device="cpu")(wavs[1:, :9000])
    assert not torch.allclose(other_seed.hidden[0], alone.hidden[0])  # noise is seeded
    assert torch.allclose(other_seed.hidden[3], alone.hidden[3], atol=0.5) and torch.equal(other_seed.hidden[1], alone.hidden[1])


def test_cka_recovers_the_planted_structure(planted_cache, tmp_path):
    from layerlab.cka.pipeline import CKAJob, run_cka
    from layerlab.cka.tables import read_matrix

    out = run_cka(CKAJob(planted_cache, estimator="debiased", level="frame"), str(tmp_path / "frame"))
    mat, names, _, _ = read_matrix(out["tables"][0])
    cka = {(a, b): mat[i, j] for i, a in enumerate(names) for j, b in enumerate(names)}
    assert out["n_frames"] > 1500
    for a, b in PlantedModel.EXPECT["cka_zero_pairs"]:
        assert abs(cka[a, b]) < 0.05, (a, b, cka[a, b])
    for a, b in PlantedModel.EXPECT["cka_positive_pairs"]:
        assert cka[a, b] > 0.1, (a, b, cka[a, b])
    assert abs(cka["content", "content"] - 1) < 1e-9 and abs(cka["noise", "noise"] - 1) < 1e-9
    utt = run_cka(CKAJob(planted_cache, estimator="debiased", level="utterance"), str(tmp_path / "utt"))
    umat = read_matrix(utt["tables"][0])[0]
    assert np.isfinite(umat).all()  # content's utterance mean is noise, not zero: utterance-level CKA stays defined


def _ridge_accuracy(x: np.ndarray, y: np.ndarray, train: np.ndarray, alpha: float = 1.0) -> float:
    """Test accuracy of a ridge (one-hot least squares) linear classifier on standardised features, fit on ``train`` rows."""
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-8
    z = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    classes = sorted(set(y))
    onehot = (y[train, None] == np.array(classes)[None]).astype(np.float64)
    w = np.linalg.solve(z[train].T @ z[train] + alpha * np.eye(z.shape[1]), z[train].T @ onehot)
    pred = np.array(classes)[np.argmax(z[~train] @ w, axis=1)]
    return float((pred == y[~train]).mean())


def test_pooled_speaker_layer_identifies_speakers_and_noise_does_not(planted_cache):
    from layerlab.cache import open_cache

    pooled = open_cache(planted_cache).read_pooled()
    y = np.array(pooled.speakers)
    train = np.array([int(i[3:]) % 4 != 0 for i in pooled.ids])
    acc = {n: _ridge_accuracy(pooled.mean[n].astype(np.float64), y, train) for n in LAYERS}
    assert acc["speaker"] >= 0.9, acc
    assert acc["noise"] <= 0.6 and acc["content"] <= 0.6, acc  # chance is 1/3 (3 speakers, 12 test utterances)

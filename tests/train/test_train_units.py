"""Training building blocks without Ray: configs, AAM logits, DINO loss and schedules, k-means, data, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.train_inputs import tiny_config

from layerlab.train.config import load_config
from layerlab.train.recipes.base import WorkerInfo


def _info(data: str, tmp: Path) -> WorkerInfo:
    return WorkerInfo(rank=0, world=1, device=torch.device("cpu"), data=data, out=str(tmp / "out"))


def test_config_files_validate_and_errors_name_the_file(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "configs" / "train"
    for name in ("supervised-tiny", "dino-tiny", "hubert-tiny", "supervised-voxceleb2", "dino-voxceleb2", "hubert-librispeech"):
        recipe = name.split("-")[0]
        cfg = load_config(recipe, root / f"{name}.yaml")
        assert cfg.recipe == recipe
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipe: supervised\nepochz: 3\n")
    with pytest.raises(ValueError) as err:
        load_config("supervised", bad)
    assert "\n" not in str(err.value) and f"{bad}: epochz: unknown key (allowed: " in str(err.value) and "lr" in str(err.value)
    with pytest.raises(ValueError, match="config is for recipe 'supervised', not 'dino'"):
        load_config("dino", bad)
    with pytest.raises(ValueError, match="targets=layer needs a teacher"):
        load_config("hubert", {"targets": "layer"})
    assert load_config("dino").head.out_dim == 65536  # paper default


def test_aam_softmax_adds_the_angular_margin_to_the_target_class_only() -> None:
    from layerlab.train.recipes.supervised import AAMSoftmax

    head = AAMSoftmax(4, 3, margin=0.2, scale=30.0)
    emb = torch.randn(5, 4)
    target = torch.tensor([0, 1, 2, 0, 1])
    logits = head(emb, target)
    cos = torch.nn.functional.normalize(emb) @ torch.nn.functional.normalize(head.weight).T
    theta = torch.acos(cos.clamp(-1, 1))
    for i, t in enumerate(target.tolist()):
        for j in range(3):
            want = math.cos(theta[i, j] + 0.2) if j == t and theta[i, j] + 0.2 < math.pi else cos[i, j]
            if j == t and theta[i, j] + 0.2 >= math.pi:
                continue  # linear fallback region
            assert abs(float(logits[i, j]) / 30.0 - float(want)) < 1e-5


def test_dino_loss_skips_same_view_pairs_and_matches_a_direct_computation() -> None:
    from layerlab.train.recipes.dino import dino_loss

    g = torch.Generator().manual_seed(0)
    s, t, center = torch.randn(2 * 4, 6, generator=g), torch.randn(2 * 2, 6, generator=g), torch.randn(1, 6, generator=g)
    got = dino_loss(s, t, center, n_global=2, n_views=4, student_temp=0.1, teacher_temp=0.05)
    sv, tv = s.chunk(4), torch.softmax((t - center) / 0.05, -1).chunk(2)
    terms = [(-tv[a] * torch.log_softmax(sv[b] / 0.1, -1)).sum(-1).mean() for a in range(2) for b in range(4) if a != b]
    assert len(terms) == 6
    torch.testing.assert_close(got, torch.stack(terms).mean())


def test_dino_schedules_follow_the_recipe(train_corpus: str, tmp_path: Path) -> None:
    from layerlab.train.recipes.dino import DinoRecipe

    cfg = load_config("dino", tiny_config("dino", epochs=10, steps_per_epoch=5))
    r = DinoRecipe(cfg, _info(train_corpus, tmp_path))
    assert r.teacher_temp(0) == pytest.approx(0.04) and r.teacher_temp(1) == pytest.approx(0.055)
    assert r.teacher_temp(2) == r.teacher_temp(9) == pytest.approx(0.07)  # warm-up over 20 % of 10 epochs
    assert r.teacher_momentum(0) == pytest.approx(0.996) and r.teacher_momentum(r.total_steps) == pytest.approx(1.0)
    assert r.base_lr == pytest.approx(0.2 * 4 / 256)  # lr x global batch / 256
    # no speaker label is read anywhere: a DINO step runs with the labels scrambled
    r.source.stream = ((setattr(c, "speaker", "?") or c) for c in r.source.stream)
    before = r.teacher.head.last_layer.detach().clone()
    out = r.train_step(0, 0, np.random.default_rng(0))
    assert math.isfinite(out["loss"])
    torch.testing.assert_close(r.teacher.head.last_layer, before)  # last layer frozen in epoch 1
    assert {"teacher_entropy", "teacher_batch_entropy", "center_norm", "agreement"} <= set(out)
    r.config = r.config.model_copy(update={"freeze_last_layer_steps": 3})  # short runs freeze by steps, not epochs
    assert r.last_layer_frozen(5, 2) and not r.last_layer_frozen(0, 3)


def test_disjoint_crops_collapse_diagnostics_and_the_rdino_regulariser() -> None:
    from layerlab.train.data import disjoint_starts
    from layerlab.train.recipes.dino import collapse_diagnostics, variance_covariance_loss

    rng = np.random.default_rng(0)
    for _ in range(50):
        lengths = [int(x) for x in rng.integers(1, 40, size=4)]
        starts = disjoint_starts(200, lengths, rng)
        spans = sorted((s, s + n) for s, n in zip(starts, lengths))
        assert spans[0][0] >= 0 and spans[-1][1] <= 200 and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert disjoint_starts(50, [30, 30], rng) is None  # does not fit: the caller falls back to random crops
    k = 16
    uniform = collapse_diagnostics(torch.zeros(4, k), torch.zeros(4, k), torch.zeros(1, k), 2, 0.04)
    assert uniform["teacher_entropy"] == pytest.approx(math.log(k))  # collapse to uniform: entropy = ln K
    one_hot = torch.eye(k)[[0, 1, 0, 1]] * 10  # utterance 0 -> prototype 0, utterance 1 -> prototype 1, in both crops
    sharp = collapse_diagnostics(one_hot, one_hot, torch.zeros(1, k), 2, 0.04)
    assert sharp["teacher_entropy"] < 1e-3 and sharp["teacher_batch_entropy"] == pytest.approx(math.log(2), abs=1e-3)
    assert sharp["agreement"] == 1.0
    spread = torch.randn(256, 8, generator=torch.Generator().manual_seed(0))  # unit std, uncorrelated
    collapsed = spread[:, :1].repeat(1, 8) * 0.01
    assert variance_covariance_loss(spread) < 0.5 < variance_covariance_loss(collapsed)


def test_kmeans_finds_separated_clusters_and_mfcc_frames_match_hubert_conv_frames() -> None:
    from layerlab.train.recipes.hubert import kmeans, mfcc_frames

    g = torch.Generator().manual_seed(0)
    blobs = torch.cat([torch.randn(200, 3, generator=g) * 0.1 + c for c in (torch.tensor([5.0, 0, 0]), torch.tensor([0, 5.0, 0]), torch.tensor([0, 0, 5.0]))])
    c = kmeans(blobs, 3, 10, seed=0)
    assert sorted(torch.cdist(blobs, c).argmin(1).bincount().tolist()) == [200, 200, 200]
    for n in (16000, 23456, 48000):
        assert mfcc_frames(np.random.default_rng(0).standard_normal(n).astype(np.float32) * 0.1).shape == (1 + (n - 400) // 320, 39)


def test_training_selection_holds_out_asv_speakers_and_counts_short_audio(train_corpus: str) -> None:
    from layerlab.data.shards import read_table
    from layerlab.train.data import random_crop, select_training

    ts = select_training(train_corpus, 60.0, min_seconds=0.5, short_audio="pad")
    trials = read_table(train_corpus, "asv_trials")
    trial_ids = set(trials.column("enrol").to_pylist()) | set(trials.column("test").to_pylist())
    assert not trial_ids & set(ts.ids) and len(ts.held_out_speakers) == 2 and len(ts.speaker_classes) == 3
    assert ts.padded_short == len(ts.ids) == 9  # every utterance is shorter than a 60 s crop
    assert select_training(train_corpus, 60.0, min_seconds=0.5, short_audio="skip").skipped_short == 9
    crop = random_crop(np.ones(100, np.float32), 300, np.random.default_rng(0))
    assert crop.shape == (300,) and crop.sum() == 100


def test_training_never_sees_a_dev_or_test_speaker_of_any_task(train_corpus: str) -> None:
    """The leak of 9425b42: SID test utterances (and content test speakers) were upstream training examples."""
    from layerlab.data.shards import read_metadata
    from layerlab.train.data import select_training

    ts = select_training(train_corpus, 1.0, min_seconds=0.5, short_audio="pad")
    meta = read_metadata(train_corpus, columns=("id", "speaker", "splits")).to_pylist()
    evaluation: dict[str, set[str]] = {}
    for row in meta:
        for key, value in row["splits"] or []:
            if value in ("dev", "test"):
                evaluation.setdefault(key, set()).add(row["speaker"])
    assert {"sid", "asv", "pr", "asr"} <= set(evaluation)
    trained = set(ts.speakers)
    for key, speakers in evaluation.items():
        assert not speakers & trained, (key, sorted(speakers & trained))
    assert not {r["id"] for r in meta if r["speaker"] in set().union(*evaluation.values())} & set(ts.ids)
    record = ts.speaker_record()
    assert record["training_speakers"] == sorted(trained) and len(trained) == 3
    assert set(ts.excluded_speakers) == set().union(*evaluation.values()) and not set(ts.excluded_speakers) & trained
    assert "sid dev/test" in record["excluded_speakers"] and "ASV held-out (per-epoch evaluation)" in record["excluded_speakers"]


def test_training_exclusion_list_from_a_study_and_an_all_evaluation_corpus(train_corpus: str) -> None:
    """A given list replaces the corpus-derived one (ASV held-out speakers stay out); excluding everyone is one error."""
    from layerlab.data.shards import read_metadata
    from layerlab.train.data import select_training

    speakers = sorted(set(read_metadata(train_corpus, columns=("speaker",)).column("speaker").to_pylist()))
    ts = select_training(train_corpus, 1.0, min_seconds=0.5, short_audio="pad", exclude={"probe sid dev/test": []})
    assert set(ts.speakers) == set(speakers) - set(ts.held_out_speakers) and len(ts.speaker_classes) == 4
    assert list(ts.excluded) == ["ASV held-out (per-epoch evaluation)"]
    one = sorted(set(ts.speakers))[0]
    ts = select_training(train_corpus, 1.0, min_seconds=0.5, short_audio="pad", exclude=[one])
    assert one not in ts.speakers and ts.excluded["exclude_speakers (config)"] == [one]
    with pytest.raises(ValueError, match=r"all 6 speakers are evaluation speakers"):
        select_training(train_corpus, 1.0, min_seconds=0.5, short_audio="pad", exclude=speakers)


def test_augmenter_keeps_length_and_uses_a_user_noise_folder(tmp_path: Path) -> None:
    import soundfile as sf

    from layerlab.train.augment import Augmenter, active_power
    from layerlab.train.config import AugmentConfig

    (tmp_path / "noise").mkdir()
    sf.write(tmp_path / "noise" / "hum.wav", (0.3 * np.sin(np.arange(8000) * 0.05)).astype(np.float32), 16000)
    wav = (0.1 * np.random.default_rng(1).standard_normal(20000)).astype(np.float32)
    aug = Augmenter(AugmentConfig(prob=1.0, reverb_prob=0.0, noise_dir=str(tmp_path / "noise"), snr_db=(0.0, 0.0)))
    out = aug(wav, np.random.default_rng(0))
    assert out.shape == wav.shape and not np.allclose(out, wav)
    residual = out - wav
    assert np.mean(residual ** 2) / active_power(wav) == pytest.approx(1.0, rel=1e-3)  # 0 dB SNR
    peak_bin = int(np.argmax(np.abs(np.fft.rfft(residual))))
    assert abs(peak_bin - 0.05 / (2 * np.pi) * 20000) < 3  # the residual is the user's hum, not coloured noise
    rev = Augmenter(AugmentConfig(prob=1.0, reverb_prob=1.0))(wav, np.random.default_rng(0))
    assert rev.shape == wav.shape and not np.allclose(rev, wav)
    with pytest.raises(ValueError, match="no audio files"):
        Augmenter(AugmentConfig(noise_dir=str(tmp_path / "noise" / "none")))


def test_bad_input_is_refused_with_the_reason(train_corpus: str, tmp_path: Path) -> None:
    from layerlab.data.records import AudioRecord
    from layerlab.data.shards import ShardWriter
    from layerlab.train.recipes.supervised import SupervisedRecipe

    info = _info(train_corpus, tmp_path)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        SupervisedRecipe(load_config("supervised", tiny_config("supervised", batch_size=64)), info)
    unlabelled = str(tmp_path / "unlabelled")
    rng = np.random.default_rng(0)
    with ShardWriter(unlabelled, "nolabels") as w:
        for i in range(8):
            w.add(AudioRecord(id=f"u{i}", audio=(0.1 * rng.standard_normal(16000)).astype(np.float32), sample_rate=16000, speaker="", source="noise"))
    with pytest.raises(ValueError, match="no speaker labels"):
        SupervisedRecipe(load_config("supervised", tiny_config("supervised")), _info(unlabelled, tmp_path))
    one = str(tmp_path / "one")
    with ShardWriter(one, "onespeaker") as w:
        for i in range(8):
            w.add(AudioRecord(id=f"u{i}", audio=(0.1 * rng.standard_normal(16000)).astype(np.float32), sample_rate=16000, speaker="solo", source="noise"))
    with pytest.raises(ValueError, match="1 training speaker"):
        SupervisedRecipe(load_config("supervised", tiny_config("supervised")), _info(one, tmp_path))


def test_hubert_iteration_two_clusters_a_layer_of_the_iteration_one_checkpoint(train_corpus: str, tmp_path: Path) -> None:
    from layerlab.models import load
    from layerlab.train.recipes.hubert import HubertRecipe

    first = HubertRecipe(load_config("hubert", tiny_config("hubert")), _info(train_corpus, tmp_path))
    first.train_step(0, 0, np.random.default_rng(0))
    assert first.centroids is not None and first.centroids.shape == (8, 39)  # iteration 1: MFCC + deltas
    spec = first.export(str(tmp_path / "it1" / "checkpoint.pt"), {"recipe": "hubert"})["model_spec"]
    cfg = load_config("hubert", tiny_config("hubert", targets="layer", teacher=spec, clusters=6))
    second = HubertRecipe(cfg, _info(train_corpus, tmp_path))
    assert second.teacher_layer == "hidden_1"  # the middle of hidden_0..hidden_2
    out = second.train_step(0, 0, np.random.default_rng(0))
    assert math.isfinite(out["loss"]) and second.centroids.shape == (6, 32)  # k-means on the 32-d teacher layer
    wav = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1
    teacher_frames, _ = load(spec, device="cpu")(torch.from_numpy(wav)[None]).layer("hidden_1")
    torch.testing.assert_close(second.frame_features(wav), teacher_frames[0, : 1 + (16000 - 400) // 320].float())
    assert second.labels(wav).max() < 6 and 0 <= second.evaluate(1)["masked_acc"] <= 1
    with pytest.raises(ValueError, match="no frame-level layer 'nope'"):
        HubertRecipe(load_config("hubert", {**tiny_config("hubert", targets="layer", teacher=spec), "teacher_layer": "nope"}),
                     _info(train_corpus, tmp_path))


def test_hubert_steps_do_not_depend_on_numpys_global_state(train_corpus: str, tmp_path: Path) -> None:
    """fairseq masks spans with numpy's global generator: each step seeds it from the step's own seed (reruns, resumes)."""
    from layerlab.train.recipes.hubert import HubertRecipe

    losses = []
    for noise in (1, 2):
        recipe = HubertRecipe(load_config("hubert", tiny_config("hubert")), _info(train_corpus, tmp_path / str(noise)))
        np.random.seed(noise)  # whatever else in the worker drew from numpy's global generator before
        losses.append([recipe.train_step(0, step, np.random.default_rng([0, 0, step]))["loss"] for step in range(2)])
    assert losses[0] == losses[1]
    state = np.random.get_state()[1].copy()
    recipe.train_step(0, 2, np.random.default_rng([0, 0, 2]))
    assert np.array_equal(np.random.get_state()[1], state)  # the global generator is left as it was

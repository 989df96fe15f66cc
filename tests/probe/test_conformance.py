"""SUPERB conformance of the probes: ASV crops in seconds, s3prl's x-vector, folds as test (ER), speaker-disjoint
derived splits (IC), the ASR probe (character CTC, WER/CER)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from memory_data import planted_source
from pydantic import ValidationError


from layerlab.probe.config import ProbeConfig
from layerlab.probe.source import ProbeInputError
from layerlab.probe.tasks import get_task
from test_cache_e2e import fbank_cache, tiny_corpus  # noqa: F401 (fixtures)

FAST = {"max_epochs": 8, "patience": 4, "intervals": False, "batch_size": 8, "lr": 3e-3}


def _at_rate(source, rate: float):
    """The planted source with its frame-level layers declared at ``rate`` Hz (same frames)."""
    src = planted_source(speakers=8, per_speaker=6, seed=2)
    src.layers = [dataclasses.replace(l, frame_rate_hz=rate) if l.frame_rate_hz else l for l in src.layers]
    return src


# ---- ASV: crop in seconds ------------------------------------------------------------------------------------

def test_asv_crop_is_seconds_so_frames_scale_with_the_frame_rate() -> None:
    """The same 0.1 s crop is 10 frames at 100 Hz and 5 at 50 Hz (the old frame count was 1.2 s vs 2.4 s)."""
    tdef = get_task("asv")
    cfg = ProbeConfig(**FAST, asv={"proj": 8, "tdnn": 8, "agg": 8, "embed": 8, "crop_seconds": 0.1})
    longest = {}
    for rate in (100.0, 50.0):
        bound = tdef.bind(_at_rate(None, rate), tdef, cfg, ["l1", "emb"])
        lengths = [int(b[1].max()) for b in bound.train_batches(0, 0)]
        longest[rate] = max(lengths)
        assert bound.info["crop_frames"] == round(0.1 * rate)
    assert longest == {100.0: 10, 50.0: 5}
    only_utterance = tdef.bind(_at_rate(None, 100.0), tdef, cfg, ["emb"])
    assert only_utterance.crop is None  # one vector per utterance: nothing to crop


def test_asv_crop_frames_is_a_one_line_error_naming_crop_seconds() -> None:
    with pytest.raises(ValidationError, match=r"asv.crop_frames was removed: use asv.crop_seconds"):
        ProbeConfig(asv={"crop_frames": 120})
    assert ProbeConfig().asv.crop_seconds == 8.0  # SUPERB's max_timestep 128000 samples at 16 kHz


# ---- x-vector as s3prl's ------------------------------------------------------------------------------------

def _s3prl_xvector(ours, in_dim: int, width: int, agg: int):
    """s3prl's sv_voxceleb1 connector + Model(XVector, SP, UtteranceExtractor) holding our head's weights."""
    model_mod = pytest.importorskip("s3prl.downstream.sv_voxceleb1.model")
    connector = torch.nn.Linear(in_dim, width)
    model = model_mod.Model(input_dim=width, agg_dim=agg, agg_module_name="SP", module_name="XVector",
                            utterance_module_name="UtteranceExtractor", hparams={"agg_dim": agg, "dropout_p": 0.0, "batch_norm": False})
    with torch.no_grad():
        connector.load_state_dict(ours.projector.state_dict())
        for conv, tdnn in zip(ours.tdnn, model.framelevel_feature_extractor.module):
            out, inp, k = conv.weight.shape
            assert tdnn.context_size == k and tdnn.dilation == conv.dilation[0]
            tdnn.kernel.weight.copy_(conv.weight.permute(0, 2, 1).reshape(out, k * inp))  # unfold order: context-major
            tdnn.kernel.bias.copy_(conv.bias)
        model.utterancelevel_feature_extractor.linear1.load_state_dict(ours.linear1.state_dict())
        model.utterancelevel_feature_extractor.linear2.load_state_dict(ours.linear2.state_dict())
    return connector, model


def test_xvector_matches_s3prl_sv_voxceleb1() -> None:
    """Unpadded TDNN, statistics pooling, embedding = linear1 + ReLU, training output = linear2 + ReLU (as s3prl)."""
    from layerlab.probe.heads import TDNN_SHRINK, XVector

    torch.manual_seed(0)
    ours = XVector(6, proj=16, tdnn=16, agg=24, embed=16).eval()
    assert [(c.kernel_size[0], c.dilation[0], c.padding[0]) for c in ours.tdnn] == [(5, 1, 0), (3, 2, 0), (3, 3, 0), (1, 1, 0), (1, 1, 0)]
    assert TDNN_SHRINK == 14  # s3prl: "TDNN layers in XVector will decrease the total sequence length by fixed 14"
    connector, theirs = _s3prl_xvector(ours, 6, 16, 24)
    x = torch.randn(1, 40, 6)
    mask = torch.zeros(1, 40 - 14)
    with torch.no_grad():
        feats = connector(x)
        np.testing.assert_allclose(ours(x, torch.tensor([40])).numpy(), theirs.inference(feats, mask).numpy(), atol=1e-5)
        np.testing.assert_allclose(ours.train_output(x, torch.tensor([40])).numpy(), theirs(feats, mask).numpy(), atol=1e-5)
        assert (ours(x, torch.tensor([40])) >= 0).all()  # the embedding is after a ReLU


def test_xvector_short_utterances_repeat_their_last_frame() -> None:
    """An utterance-level layer (one frame) or a clip shorter than the 15-frame context still gets an embedding."""
    from layerlab.probe.heads import XVector

    torch.manual_seed(1)
    head = XVector(4, proj=8, tdnn=8, agg=8, embed=8).eval()
    one = torch.randn(1, 1, 4)
    with torch.no_grad():
        a = head(one, torch.tensor([1]))
        b = head(one.expand(1, 15, 4).contiguous(), torch.tensor([15]))
    assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-6)


# ---- ASR: character CTC, SUPERB's BLSTM head ----------------------------------------------------------------------

def _with_transcripts(speakers: int = 6, per_speaker: int = 10):
    """Planted source whose transcript spells the planted phones (one letter each, a word per phone) on the PR split."""
    from layerlab.data.tasks import TaskSpec

    src = planted_source(speakers=speakers, per_speaker=per_speaker)
    src.rows["transcript"] = [" ".join(labels["pr"].split()) for labels in src.rows["labels"]]
    src.tasks = {**src.tasks, "asr": TaskSpec(name="asr", kind="transcription", label_keys=["transcript"], split_key="pr")}
    return src


def test_blstm_head_matches_s3prl_asr_rnns() -> None:
    """projector -> 2 BLSTM layers -> linear, sequences packed: equal to s3prl's downstream/asr RNNs with the same weights."""
    asr_model = pytest.importorskip("s3prl.downstream.asr.model")
    from layerlab.probe.heads import BLSTMCTC

    torch.manual_seed(0)
    ours = BLSTMCTC(5, 7, project=6, hidden=4, layers=2, dropout=0.0).eval()
    theirs = asr_model.RNNs(6, 7, 320, module="LSTM", bidirection=True, dim=[4, 4], dropout=[0.0, 0.0], layer_norm=[False, False],
                            proj=[False, False], sample_rate=[1, 1], sample_style="concat", total_rate=-1).eval()
    with torch.no_grad():
        for mine, layer in zip(ours.rnns, theirs.rnns):
            layer.layer.load_state_dict(mine.state_dict())
        theirs.linear.load_state_dict(ours.out.state_dict())
        x, lengths = torch.randn(3, 11, 5), torch.tensor([11, 4, 8])
        x[1, 4:] = 0
        x[2, 8:] = 0
        got = ours(x, lengths)
        want, want_len = theirs(ours.projector(x), lengths)
        alone = [ours(x[i : i + 1, :n], torch.tensor([n])) for i, n in enumerate(lengths.tolist())]
    for i, n in enumerate(lengths.tolist()):
        np.testing.assert_allclose(got[i, :n].numpy(), want[i, :n].numpy(), atol=1e-5)
        np.testing.assert_allclose(got[i, :n].numpy(), alone[i][0].numpy(), atol=1e-5)  # batching changes nothing
    from layerlab.probe.config import ASRConfig

    assert ASRConfig().model_dump() == {"project": 1024, "hidden": 1024, "layers": 2, "dropout": 0.2}  # s3prl asr/config.yaml


def test_asr_probe_transcribes_from_the_phone_layer_not_from_noise() -> None:
    from layerlab.probe.train import evaluate_state, fit

    src = _with_transcripts()
    tdef = get_task("asr")
    assert tdef.frame_targets and tdef.primary == "wer" and not tdef.higher_is_better["wer"]
    cfg = ProbeConfig(**{**FAST, "max_epochs": 40, "patience": 10, "lr": 1e-2}, asr={"project": 16, "hidden": 16, "layers": 2, "dropout": 0.0})
    results = {}
    for layer in ("l2", "l0"):
        bound = tdef.bind(src, tdef, cfg, [layer])
        fit_result = fit(bound, {}, cfg, seed=0)
        _, ev = evaluate_state(bound, {}, fit_result.best_state, "test", cfg)
        results[layer] = ev.metrics
    assert set(results["l2"]) == {"wer", "cer"}
    assert results["l2"]["wer"] < 0.35 and results["l0"]["wer"] > 0.7, results
    test_speakers = set(src.rows.loc[bound.splits.ids["test"], "speaker"])
    assert not test_speakers & set(src.rows.loc[bound.splits.ids["train"], "speaker"])


def test_wer_and_cer_count_word_and_character_edits() -> None:
    from layerlab.probe.tasks.asr import word_and_char_edits

    assert word_and_char_edits("the cat sat", "the hat sat") == (1, 3, 1, 11)
    assert word_and_char_edits("a b", "") == (2, 2, 3, 3)


def test_asr_is_planned_by_the_study_on_the_frames_tier() -> None:
    from layerlab.probe.tasks import task_names
    from layerlab.study.plan import task_tier

    assert "asr" in task_names() and task_tier("asr") == "frames"


# ---- derived splits: speaker-disjoint for IC ------------------------------------------------------------------------

def _speakers_of(bound, split: str) -> set[str]:
    return set(bound.rows.loc[bound.splits.ids[split], "speaker"].astype(str))


def test_ic_derived_split_can_be_speaker_disjoint() -> None:
    """The demo's IC derives its split: ``derived_split: speaker`` keeps every speaker in one split (auto mixes them)."""
    src = planted_source(speakers=10, per_speaker=8)
    tdef = get_task("ic")
    base = {**FAST, "ignore_dataset_split": True, "drop_unseen_labels": True}
    mixed = tdef.bind(src, tdef, ProbeConfig(**base), ["l1"])
    assert _speakers_of(mixed, "test") & _speakers_of(mixed, "train")  # stratified by label: speakers shared
    bound = tdef.bind(src, tdef, ProbeConfig(**base, derived_split="speaker"), ["l1"])
    train, dev, test = (_speakers_of(bound, s) for s in ("train", "dev", "test"))
    assert train and dev and test and not (train & dev or train & test or dev & test)
    assert "speaker-disjoint" in bound.splits.rule and bound.splits.derived
    again = tdef.bind(src, tdef, ProbeConfig(**base, derived_split="speaker"), ["l1"])
    assert again.splits.ids == bound.splits.ids  # seeded


def test_asv_refuses_a_stratified_derived_split() -> None:
    tdef = get_task("asv")
    with pytest.raises(ProbeInputError, match="derived_split 'stratified' would mix them"):
        tdef.bind(planted_source(), tdef, ProbeConfig(**FAST, derived_split="stratified"), ["l1"])


# ---- ER: every fold as test, mean over folds --------------------------------------------------------------------

def _with_folds(speakers: int = 10):
    """Planted source with an ER-like task: label ic_a (planted in l1), five 'sessions' of two speakers each as folds."""
    from layerlab.data.tasks import TaskSpec

    src = planted_source(speakers=speakers, per_speaker=8, seed=3)
    src.rows["splits"] = [{**sp, "er": f"session{int(spk[3:]) // 2 + 1}"} for sp, spk in zip(src.rows["splits"], src.rows["speaker"])]
    folds = [f"session{k}" for k in range(1, 6)]
    src.tasks = {**src.tasks, "er": TaskSpec(name="er", kind="utterance_classification", label_keys=["ic_a"], split_key="er", folds=folds)}
    return src


def test_fold_mean_averages_folds_and_leaves_groups_out_across_them() -> None:
    from layerlab.probe.evaluation import Evaluation
    from layerlab.probe.folds import fold_mean

    def ev(correct: list[int], groups: list[str]) -> Evaluation:
        c = np.asarray(correct, dtype=float)
        return Evaluation({"accuracy": float(c.mean())}, n=len(c), units="utterances",
                          statistic=lambda keep: {"accuracy": float(c[keep].mean())}, groups=groups, grouping="speaker")

    a, b = ev([1, 1, 0, 0], ["s1", "s1", "s2", "s2"]), ev([1, 1, 1, 0, 0, 0], ["s3", "s3", "s3", "s4", "s4", "s4"])
    mean = fold_mean([a, b])
    assert mean.metrics["accuracy"] == pytest.approx(0.5) and mean.n == 10 and mean.grouping == "speaker"
    keep = np.array([g != "s2" for g in mean.groups])
    assert mean.statistic(keep)["accuracy"] == pytest.approx((1.0 + 0.5) / 2)  # fold a without s2, fold b whole
    assert mean.statistic(np.ones(10, dtype=bool))["accuracy"] == pytest.approx(0.5)
    iv = mean.intervals(0.95)["accuracy"]
    assert iv.low < 0.5 < iv.high and iv.n_groups == 4


def test_er_runs_every_fold_as_test_and_reports_the_mean(tmp_path, monkeypatch) -> None:
    import pandas as pd

    import layerlab.probe.api as api
    from layerlab.probe.tasks.base import folds_to_run

    src = _with_folds()
    tdef = get_task("er")
    assert folds_to_run(src, tdef, ProbeConfig()) == [f"session{k}" for k in range(1, 6)]
    assert folds_to_run(src, tdef, ProbeConfig(test_fold="session2")) == []  # one fold asked for: no loop
    assert folds_to_run(planted_source(), get_task("sid"), ProbeConfig()) == []
    monkeypatch.setattr(api, "open_source", lambda cache, **_: src)
    cfg = ProbeConfig(max_epochs=4, patience=2, batch_size=8, lr=1e-2)
    summary = api.run_probe("planted", "er", str(tmp_path / "er"), layers="both", runner="local", config=cfg)
    metrics = pd.read_parquet(tmp_path / "er" / "metrics.parquet")
    folds = summary["folds"]
    assert folds == [f"session{k}" for k in range(1, 6)]
    acc = metrics[metrics["metric"] == "accuracy"].set_index(["probe", "split"])["value"]
    for probe in ("weighted_sum", "l0", "l1", "l2", "emb"):
        per_fold = [acc[(probe, f"test:{f}")] for f in folds]
        assert acc[(probe, "test")] == pytest.approx(np.mean(per_fold))  # the mean over the 5 folds
        assert acc[(probe, "dev")] == pytest.approx(np.mean([acc[(probe, f"dev:{f}")] for f in folds]))
    mean_rows = metrics[(metrics["split"] == "test") & (metrics["metric"] == "accuracy")]
    assert (mean_rows["ci_low"] <= mean_rows["value"]).all() and (mean_rows["value"] <= mean_rows["ci_high"]).all()
    assert (mean_rows["n"] == len(src.rows)).all()  # every utterance is a test utterance of exactly one fold
    for fold in folds:  # each fold's test set is that session, its training never sees it
        info = summary["task_info"]["folds"][fold]
        assert info["splits"]["sizes"]["test"] == int(sum(s["er"] == fold for s in src.rows["splits"]))
        assert "fold 'session" in info["splits"]["rule"] and (tmp_path / "er" / "folds" / fold / "metrics.parquet").is_file()
    assert set(pd.read_parquet(tmp_path / "er" / "trials.parquet")["fold"]) == set(folds)
    weights = pd.read_parquet(tmp_path / "er" / "layer_weights.parquet")
    assert list(weights["layer"]) == ["l0", "l1", "l2", "emb"] and weights["weight"].sum() == pytest.approx(1.0)
    assert summary["test"]["weighted_sum/accuracy"] == pytest.approx(acc[("weighted_sum", "test")])


def test_asr_layer_weights_are_reported_like_pr() -> None:
    src = _with_transcripts()
    tdef = get_task("asr")
    cfg = ProbeConfig(**FAST, asr={"project": 8, "hidden": 8, "layers": 1, "dropout": 0.0})
    bound = tdef.bind(src, tdef, cfg, ["l0", "l1", "l2"])
    raw, share = bound.importance(bound.build({}, 0))
    assert raw.shape == share.shape == (3,) and np.isclose(raw.sum(), 1.0) and np.isclose(share.sum(), 1.0)


@pytest.mark.slow
def test_asr_on_a_synthetic_corpus_cache(fbank_cache: str, tmp_path) -> None:  # noqa: F811
    """The ASR probe on real extracted FBANK frames of the synthetic corpus's read sentences: WER/CER rows with intervals."""
    import pandas as pd

    from layerlab.probe.api import run_probe

    cfg = ProbeConfig(max_epochs=6, patience=6, batch_size=8, lr=3e-3, asr={"project": 64, "hidden": 64, "layers": 2})
    summary = run_probe(fbank_cache, "asr", str(tmp_path / "asr"), layers="weighted", runner="local", config=cfg)
    m = pd.read_parquet(tmp_path / "asr" / "metrics.parquet")
    test = m[m["split"] == "test"].set_index("metric")
    assert set(test.index) == {"wer", "cer"} and (test["n"] > 0).all()
    assert np.isfinite(test["value"]).all() and (test["value"] >= 0).all()
    assert ((test["ci_low"] <= test["value"]) & (test["value"] <= test["ci_high"])).all()
    assert summary["task_info"]["characters"] >= 20 and summary["task_info"]["splits"]["rule"].startswith("dataset split 'asr'")
    print("asr fbank", test[["value", "ci_low", "ci_high", "n"]].to_dict("index"))

"""Probe training on planted in-memory data: tasks learn what is planted, pooled == frames, early stopping, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from memory_data import planted_source

from layerlab.probe.config import ProbeConfig
from layerlab.probe.source import ProbeInputError
from layerlab.probe.tasks import get_task
from layerlab.probe.train import evaluate_state, fit

FAST = {"max_epochs": 25, "patience": 8, "intervals": False, "batch_size": 8, "lr": 3e-3}


@pytest.fixture(scope="module")
def source():
    return planted_source()


@pytest.fixture(scope="module")
def speakers():
    """More speakers (12 train, 2 held out) for the verification tasks."""
    return planted_source(speakers=14, per_speaker=6, seed=2)


def _train(source, task, layers, **kw):
    cfg = ProbeConfig(**{**FAST, **kw})
    tdef = get_task(task)
    bound = tdef.bind(source, tdef, cfg, layers)
    result = fit(bound, {}, cfg, seed=0)
    model, ev = evaluate_state(bound, {}, result.best_state, "test", cfg)
    return bound, model, ev, result


def test_sid_weighted_sum_learns_speaker_layers(source) -> None:
    bound, model, ev, _ = _train(source, "sid", ["l0", "l1", "l2", "emb"])
    assert bound.tier == "pooled"
    assert ev.metrics["accuracy"] >= 0.9
    raw, _ = bound.importance(model)
    assert raw[0] < raw[1] or raw[0] < raw[3]  # the pure-noise layer is not the favourite
    _, _, ev_noise, _ = _train(source, "sid", ["l0"])
    assert ev_noise.metrics["accuracy"] < ev.metrics["accuracy"] - 0.3


def test_ic_reports_all_slot_and_per_slot_accuracy(source) -> None:
    _, _, ev, _ = _train(source, "ic", ["l1"], max_epochs=40, lr=1e-2)
    assert set(ev.metrics) == {"accuracy", "accuracy_ic_a", "accuracy_ic_b"}
    assert ev.metrics["accuracy"] <= min(ev.metrics["accuracy_ic_a"], ev.metrics["accuracy_ic_b"]) + 1e-12


def test_pr_ctc_learns_phones_from_the_phone_layer(source) -> None:
    _, _, ev_good, _ = _train(source, "pr", ["l2"], max_epochs=20, lr=2e-2)
    _, _, ev_bad, _ = _train(source, "pr", ["l0"], max_epochs=4, lr=1e-2)
    assert ev_good.metrics["per"] < 0.35 < ev_bad.metrics["per"]


def test_pooled_probe_equals_frames_probe(source) -> None:
    """Same init, same batches: logits of the pooled-tier probe equal the frames-tier probe's (<= 1e-5)."""
    layers = ["l0", "l1", "l2", "emb"]
    tdef = get_task("sid")
    pooled = tdef.bind(source, tdef, ProbeConfig(**FAST), layers)
    frames = tdef.bind(source, tdef, ProbeConfig(**FAST, tier="frames"), layers)
    assert (pooled.tier, frames.tier) == ("pooled", "frames")
    m_p, m_f = pooled.build({}, 0), frames.build({}, 0)
    assert all(torch.equal(a, b) for a, b in zip(m_p.state_dict().values(), m_f.state_dict().values()))
    assert m_p.featurizer.mode == "scale" and not torch.allclose(m_p.featurizer.scales, torch.ones(4))  # the default rescales: still exact
    opt_p, opt_f = (torch.optim.Adam(m.parameters(), lr=1e-2) for m in (m_p, m_f))
    # the frames stream (bounded shuffle buffer) decides the order; the pooled probe gets the same ids
    from layerlab.probe.tasks.frames import aligned_utterances, batched

    stream = aligned_utterances(source, "sid", layers, set(frames.splits.ids["train"]), shuffle_buffer=8, seed=3)
    for ids, fr, lengths in batched(stream, 8):
        y = torch.from_numpy(frames.targets[[frames.position[u] for u in ids]])
        loss_f = frames.loss(m_f, ("frames", fr, lengths, y))
        loss_p = pooled.loss(m_p, ("pooled", *pooled._pooled_batch(ids)))
        for opt, loss in ((opt_p, loss_p), (opt_f, loss_f)):
            opt.zero_grad()
            loss.backward()
            opt.step()
    test_ids = frames.splits.ids["test"]
    with torch.no_grad():
        lp = m_p.forward_pooled(pooled._pooled_batch(test_ids)[0])
        _, fr, lengths = next(batched(aligned_utterances(source, "sid", layers, set(test_ids)), len(test_ids)))
        order = [frames.position[u] for u in test_ids]
        lf = m_f.forward_frames(fr, lengths)
    # frames come in storage order; pooled in split order: compare by id
    stream_ids = [u for u, _ in aligned_utterances(source, "sid", layers, set(test_ids))]
    lf = lf[[stream_ids.index(u) for u in test_ids]]
    assert order  # non-empty test split
    diff = (lp - lf).abs().max().item()
    assert diff <= 1e-5, diff
    assert not torch.allclose(m_p.featurizer.weights, torch.zeros(4))  # weights were trained


def test_early_stopping_and_resume_state(source) -> None:
    cfg = ProbeConfig(**{**FAST, "max_epochs": 50, "patience": 3, "report_interval_s": 0.0})
    tdef = get_task("sid")
    bound = tdef.bind(source, tdef, cfg, ["l0"])  # noise only: dev accuracy plateaus, stopping early
    snaps = []
    result = fit(bound, {}, cfg, seed=1, report=lambda m, s: snaps.append(s))
    assert result.epochs < 50 and result.epochs - result.best_epoch == 3
    resumed = fit(bound, {}, cfg, seed=1, resume=[s for s in snaps if s is not None][1])
    assert resumed.epochs >= 2 and resumed.history[:2] == result.history[:2]


def test_asv_xvector_separates_held_out_speakers(speakers) -> None:
    small = {"asv": {"proj": 32, "tdnn": 32, "agg": 64, "embed": 32, "crop_seconds": 0.4, "dev_speaker_fraction": 0.2}}
    bound, _, ev, _ = _train(speakers, "asv", ["l1", "emb"], max_epochs=6, lr=3e-3, **small)
    assert set(ev.metrics) == {"eer", "min_dcf"}
    assert ev.metrics["eer"] < 0.2, ev.metrics
    assert bound.info["trials"]["test"]["source"].startswith("derived")


def test_asv_cosine_per_layer(speakers) -> None:
    tdef = get_task("asv-cosine")
    bound = tdef.bind(speakers, tdef, ProbeConfig(**FAST, asv={"dev_speaker_fraction": 0.25}), ["l0", "l1", "emb"])
    scores = bound.score_layers("test")
    assert scores["l1"].metrics["eer"] < 0.1 and scores["l0"].metrics["eer"] > 0.2


def test_bad_input_errors_name_cache_task_and_problem(source) -> None:
    cfg = ProbeConfig(**FAST)
    with pytest.raises(ProbeInputError, match=r"memory://planted: task 'ks': .*no labels for it.*has: asv, ic, pr, sid"):
        get_task("ks").bind(source, get_task("ks"), cfg, ["l0"])
    nan_source = planted_source(nan_in="s1-u00")
    with pytest.raises(ProbeInputError, match=r"task 'sid': non-finite activations .* layer 'l1' of utterance 's1-u00'"):
        get_task("sid").bind(nan_source, get_task("sid"), cfg, ["l1"])
    pooled_only = planted_source()
    pooled_only.pooled_arrays = pooled_only.pooled()
    pooled_only.frames = None
    with pytest.raises(ProbeInputError, match=r"task 'pr': needs the frames tier, but the cache has only pooled"):
        get_task("pr").bind(pooled_only, get_task("pr"), cfg, ["l2"])
    unseen = planted_source()
    unseen.rows.at["s0-u09", "labels"] = {**unseen.rows.at["s0-u09", "labels"], "sid": "nobody"}
    with pytest.raises(ProbeInputError, match=r"label\(s\) 'nobody' of key 'sid' appear in test but never in train"):
        get_task("sid").bind(unseen, get_task("sid"), cfg, ["l1"])
    empty = planted_source()
    empty.rows["splits"] = [{**s, "sid": "other" if s["sid"] == "dev" else s["sid"]} for s in empty.rows["splits"]]
    got = get_task("sid").bind(empty, get_task("sid"), cfg, ["l1"])  # no dev: derived from train, recorded
    assert got.splits.derived and "dev derived from train" in got.splits.rule
    no_test = planted_source()
    no_test.rows["splits"] = [{**s, "sid": "train" if s["sid"] == "test" else s["sid"]} for s in no_test.rows["splits"]]
    with pytest.raises(ProbeInputError, match=r"split 'test' has no examples"):
        get_task("sid").bind(no_test, get_task("sid"), cfg, ["l1"])


def test_derived_sid_split_is_stratified_and_seeded() -> None:
    src = planted_source()
    src.rows["splits"] = [{} for _ in range(len(src.rows))]
    tdef = get_task("sid")
    a = tdef.bind(src, tdef, ProbeConfig(**FAST), ["l1"])
    b = tdef.bind(src, tdef, ProbeConfig(**FAST), ["l1"])
    c = tdef.bind(src, tdef, ProbeConfig(**FAST, split_seed=1), ["l1"])
    assert a.splits.derived and a.splits.ids == b.splits.ids and a.splits.ids != c.splits.ids
    for split in ("train", "dev", "test"):  # every speaker in every split
        assert src.rows.loc[a.splits.ids[split], "speaker"].nunique() == 6
    assert np.isclose(len(a.splits.ids["test"]) / len(src.rows), 0.2, atol=0.05)


def test_frame_labels_follow_alignment_spans_exactly(source) -> None:
    """Planted phones last whole 160-sample frames: span -> frame mapping must recover them frame by frame."""
    from memory_data import PHONES

    from layerlab.probe.tasks.pr_frame import frame_labels, spans_of

    layer = source.layers[2]
    index = {p: i for i, p in enumerate(PHONES)}
    for uid in list(source.rows.index)[:5]:
        phones, starts, ends = spans_of(source.rows.at[uid, "alignment"])
        n = source.frames[uid][2].shape[0]
        expect = np.concatenate([[index[p]] * ((e - s) // 160) for p, s, e in zip(phones, starts, ends)])
        np.testing.assert_array_equal(frame_labels(layer, source.rows.at[uid, "alignment"], n, index), expect)


def test_frame_wise_phone_probe(source) -> None:
    _, _, good, _ = _train(source, "pr-frame", ["l2"], max_epochs=10, lr=1e-2)
    _, _, bad, _ = _train(source, "pr-frame", ["l0"], max_epochs=3, lr=1e-2)
    assert good.metrics["frame_accuracy"] > 0.9
    assert bad.metrics["frame_accuracy"] < 0.5


def test_unseen_test_labels_can_be_dropped_and_counted() -> None:
    src = planted_source()
    src.rows.at["s0-u09", "labels"] = {**src.rows.at["s0-u09", "labels"], "sid": "nobody"}
    tdef = get_task("sid")
    bound = tdef.bind(src, tdef, ProbeConfig(**FAST, drop_unseen_labels=True), ["l1"])
    assert bound.info["dropped_unseen_labels"] == {"test": 1} and "s0-u09" not in bound.splits.ids["test"]


def test_per_layer_probes_reuse_the_frames_the_weighted_sum_decoded() -> None:
    """Held frames are kept per layer: after a pass over all layers, one layer's pass decodes nothing and equals a fresh read."""
    from layerlab.probe.tasks.frames import aligned_utterances

    layers = ["l0", "l1", "l2", "emb"]
    held, fresh = planted_source(), planted_source()
    calls: list[list[str]] = []
    inner = held.iter_frames
    held.iter_frames = lambda names, ids=None: calls.append(list(names)) or inner(names, ids)  # type: ignore[method-assign]
    ids = set(list(held.rows.index)[:10])
    all_layers = list(aligned_utterances(held, "sid", layers, ids, hold_mb=64))
    assert calls == [layers] and len(all_layers) == 10
    for name in ("l1", "emb"):
        again = list(aligned_utterances(held, "sid", [name], ids, shuffle_buffer=4, seed=1, hold_mb=64))
        streamed = list(aligned_utterances(fresh, "sid", [name], ids, shuffle_buffer=4, seed=1))
        assert [u for u, _ in again] == [u for u, _ in streamed]
        assert all(np.array_equal(a[0], b[0]) for (_, a), (_, b) in zip(again, streamed))
    assert calls == [layers]  # nothing decoded twice
    list(aligned_utterances(held, "sid", ["l1"], set(held.rows.index), hold_mb=64))  # more utterances than held: read
    assert len(calls) == 2


def test_phone_probes_sum_frame_level_layers_only(source) -> None:
    from layerlab.probe.api import weighted_layers

    frame_level = [l.name for l in source.layers if not l.utterance_level]
    assert 0 < len(frame_level) < len(source.layers)
    assert weighted_layers(source, get_task("pr")) == frame_level
    assert weighted_layers(source, get_task("pr-frame")) == frame_level
    assert weighted_layers(source, get_task("sid")) == [l.name for l in source.layers]
    assert weighted_layers(source, get_task("asv")) == [l.name for l in source.layers]


def test_xvector_embeddings_do_not_depend_on_batch_padding() -> None:
    """Padded frames are masked after every layer: a batch of mixed lengths gives each utterance's lone embedding."""
    from layerlab.probe.heads import XVector

    torch.manual_seed(0)
    head = XVector(6, proj=8, tdnn=8, agg=12, embed=5).eval()
    utts = [torch.randn(n, 6) for n in (7, 19, 12)]
    padded = torch.zeros(3, 19, 6)
    for i, u in enumerate(utts):
        padded[i, : u.shape[0]] = u
    with torch.no_grad():
        batch = head(padded, torch.tensor([7, 19, 12]))
        alone = torch.cat([head(u[None], torch.tensor([u.shape[0]])) for u in utts])
    assert (batch - alone).abs().max().item() <= 1e-5


def test_held_frames_count_each_layer_and_utterance_once_against_the_budget() -> None:
    """A pass over layers partly held already charges only what it adds: a budget of exactly all layers keeps everything."""
    from layerlab.probe.tasks.frames import aligned_utterances

    layers = ["l0", "l1", "l2", "emb"]
    held = planted_source()
    ids = set(list(held.rows.index)[:10])
    exact = sum(x.nbytes for u in ids for x in held.frames[u]) / 2**20  # every layer of every utterance, once
    calls: list[list[str]] = []
    inner = held.iter_frames
    held.iter_frames = lambda names, ids=None: calls.append(list(names)) or inner(names, ids)  # type: ignore[method-assign]
    list(aligned_utterances(held, "sid", ["l1"], ids, hold_mb=exact))
    list(aligned_utterances(held, "sid", layers, ids, hold_mb=exact))
    list(aligned_utterances(held, "sid", layers, ids, hold_mb=exact))
    assert calls == [["l1"], layers]  # the third pass was served from memory
    assert held._held_frames.nbytes == exact * 2**20  # type: ignore[attr-defined]

"""The weighted sum on layers of very different scales, convergence records of ``fit``, deterministic trial choice."""

from __future__ import annotations

import numpy as np
import pytest
from memory_data import planted_source, scaled_source

from layerlab.probe.config import ProbeConfig
from layerlab.probe.tasks import get_task
from layerlab.probe.train import evaluate_state, fit

SID = get_task("sid")


def _run(source, layers, **kw):
    cfg = ProbeConfig(intervals=False, **kw)
    bound = SID.bind(source, SID, cfg, layers)
    result = fit(bound, {}, cfg, seed=0)
    model, ev = evaluate_state(bound, {}, result.best_state, "test", cfg)
    raw, share = bound.importance(model)
    return ev.metrics["accuracy"], result, raw, share


@pytest.mark.parametrize("info_scale", [0.01, 100.0])
def test_weighted_sum_matches_the_best_single_layer_whatever_the_layer_scales(info_scale: float) -> None:
    """One informative layer at 1/100 or 100x the scale of three noise layers: the default sum finds it."""
    source = scaled_source(info_scale=info_scale)
    layers = [l.name for l in source.layers]
    single = max(_run(source, [n])[0] for n in layers)
    summed, result, raw, share = _run(source, layers)
    assert single == pytest.approx(1.0, abs=0.05)
    assert summed >= single - 0.05
    assert result.stopped_by == "patience" and result.epochs < result.max_epochs
    assert int(np.argmax(share)) == layers.index("info") and share[1] > 0.4


def test_without_normalisation_a_quiet_informative_layer_is_drowned() -> None:
    """SUPERB's raw sum (normalize none, the old default) on the same data: far below the best single layer."""
    source = scaled_source(info_scale=0.01)
    layers = [l.name for l in source.layers]
    single = _run(source, ["info"])[0]
    for extra in ({}, {"lr": 1e-2}):
        summed, _, _, share = _run(source, layers, normalize="none", **extra)
        assert summed < single - 0.4
        assert share[1] < 0.05  # and its contribution says so: the info term is tiny in the sum


def test_scale_normalisation_makes_the_probe_invariant_to_a_layer_scale() -> None:
    quiet, loud = (_run(scaled_source(info_scale=s), ["noise0", "info", "noise1", "noise2"]) for s in (0.01, 100.0))
    assert quiet[0] == loud[0] and quiet[1].epochs == loud[1].epochs
    np.testing.assert_allclose(quiet[2], loud[2], atol=1e-4)


def test_fit_records_why_it_stopped_and_the_plateau_schedule_lowers_the_rate() -> None:
    source = planted_source()
    cfg = ProbeConfig(intervals=False, batch_size=8, lr=3e-3)
    bound = SID.bind(source, SID, cfg, ["l1"])
    done = fit(bound, {}, cfg)
    assert done.stopped_by == "patience" and done.max_epochs == 300 and done.epochs == done.best_epoch + 30
    assert done.convergence() == {"stopped_by": "patience", "epochs": done.epochs, "best_epoch": done.best_epoch, "max_epochs": 300}
    rates = [h["lr"] for h in done.history]
    assert rates[0] == pytest.approx(3e-3) and rates[-1] < rates[0] / 4 and all(a >= b for a, b in zip(rates, rates[1:]))
    capped = fit(bound, {}, cfg.model_copy(update={"max_epochs": 2}))
    assert capped.stopped_by == "max_epochs" and capped.epochs == 2 and capped.max_epochs == 2
    assert ProbeConfig().epochs_for("pooled") == (300, 30) and ProbeConfig().epochs_for("frames") == (60, 10)
    assert ProbeConfig(max_epochs=5, patience=9).epochs_for("pooled") == (5, 5)


def test_ties_between_trials_go_to_the_lowest_trial_id() -> None:
    from layerlab.probe.api import _best
    from layerlab.probe.sweep import TrialOutcome

    outcomes = [TrialOutcome(t, {"lr": i}, dev, 3, {"best_state": {}}) for i, (t, dev) in enumerate([("b", 0.9), ("c", 0.8), ("a", 0.9)])]
    assert _best(outcomes, True, "x").trial_id == "a"
    assert _best(list(reversed(outcomes)), True, "x").trial_id == "a"
    assert _best(outcomes, False, "x").trial_id == "c"


def test_a_flat_dev_metric_with_a_falling_dev_loss_is_still_progress() -> None:
    """Dev accuracy saturates early on a dozen utterances; the best state keeps moving while the dev loss falls."""
    source = planted_source()
    cfg = ProbeConfig(intervals=False, batch_size=8, lr=3e-3)
    bound = SID.bind(source, SID, cfg, ["l1", "emb"])
    result = fit(bound, {}, cfg)
    accs = [h["dev_accuracy"] for h in result.history]
    first_top = accs.index(max(accs)) + 1
    assert result.best_epoch > first_top  # the old rule (strictly better metric only) keeps the first epoch at the top
    best = result.history[result.best_epoch - 1]
    assert best["dev_accuracy"] == max(accs) and best["dev_loss"] < result.history[first_top - 1]["dev_loss"] - 1e-3
    assert result.stopped_by == "patience"


def test_scales_come_from_the_training_split_from_pooled_stats_or_frames_alike() -> None:
    from dataclasses import dataclass

    from layerlab.probe.source import MemorySource
    from layerlab.probe.tasks.frames import train_scales

    @dataclass
    class FramesOnly(MemorySource):
        @property
        def tiers(self) -> set[str]:
            return {"frames"}

    source = planted_source()
    frames_only = FramesOnly(**{k: getattr(source, k) for k in ("url", "model", "layers", "rows", "frames", "tasks")})
    layers = ["l0", "l1", "l2", "emb"]
    train = [u for u in source.rows.index if u.endswith(("00", "01", "02"))]
    pooled = train_scales(source, "sid", layers, train)
    np.testing.assert_allclose(train_scales(frames_only, "sid", layers, train), pooled, rtol=1e-5)
    everything = train_scales(source, "sid", layers, list(source.rows.index))
    assert not np.allclose(pooled, everything, rtol=1e-6)  # only the training utterances count
    for i, n in enumerate(layers):
        x = np.concatenate([source.frames[u][i].astype(np.float64) for u in train]) if n != "emb" else None
        if x is not None:  # the frames' spread about their mean per dimension when utterances weigh the same (close here)
            assert pooled[i] == pytest.approx(np.sqrt(np.square(x - x.mean(0)).sum(1).mean() / x.shape[1]), rel=0.1)
    on_frames = SID.bind(frames_only, SID, ProbeConfig(tier="frames"), layers)
    np.testing.assert_allclose(on_frames.scales, train_scales(source, "sid", layers, on_frames.splits.ids["train"]), rtol=1e-5)
    assert SID.bind(source, SID, ProbeConfig(normalize=True), layers).tier == "frames"  # per-frame layer norm needs frames


def test_normalize_auto_resolves_per_head() -> None:
    """auto: layer norm for the frame-by-frame PR head, the per-layer scalar for pooled heads (either tier) and ASV."""
    source = planted_source()
    layers = ["l0", "l1", "l2"]
    got = {name: get_task(name).bind(source, get_task(name), ProbeConfig(**extra), layers).cfg.normalize
           for name, extra in (("pr", {}), ("sid", {}), ("asv", {}))}
    assert got == {"pr": "layer_norm", "sid": "scale", "asv": "scale"}
    assert SID.bind(source, SID, ProbeConfig(tier="frames"), layers).cfg.normalize == "scale"
    assert get_task("pr").bind(source, get_task("pr"), ProbeConfig(normalize="none"), layers).cfg.normalize == "none"


def test_max_train_utterances_draws_a_seeded_speaker_balanced_sample() -> None:
    from collections import Counter

    from layerlab.probe.tasks.base import speaker_balanced_sample

    ids = [f"s{s}_{k}" for s in range(4) for k in range(10 if s else 3)]
    speakers = [u.split("_")[0] for u in ids]
    pick = speaker_balanced_sample(ids, speakers, 13, seed=0)
    counts = Counter(u.split("_")[0] for u in pick)
    assert len(pick) == 13 and counts["s0"] == 3 and max(counts.values()) - min(c for s, c in counts.items() if s != "s0") <= 1
    assert pick == speaker_balanced_sample(ids, speakers, 13, seed=0) and pick != speaker_balanced_sample(ids, speakers, 13, seed=1)
    source = planted_source()
    bound = SID.bind(source, SID, ProbeConfig(max_train_utterances=12), ["l1"])
    assert len(bound.splits.ids["train"]) == 12 and any("max_train_utterances" in n for n in bound.splits.notes)

"""Probe metric rows: bounded intervals per metric, a visible few-groups note, group counts and the replicates table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from layerlab.metrics import accuracy, eer, min_dcf
from layerlab.probe.evaluation import Evaluation
from layerlab.probe.results import METRIC_COLUMNS, REPLICATE_COLUMNS, metric_rows, replicate_rows


def _sid(speakers: int, acc: float, seed: int = 0) -> Evaluation:
    rng = np.random.default_rng(seed)
    spk = np.repeat([f"s{i}" for i in range(speakers)], 13)
    truth = rng.integers(0, 4, spk.size)
    pred = np.where(rng.random(spk.size) < acc, truth, (truth + 1) % 4)

    def metrics(keep: np.ndarray) -> dict[str, float]:
        return {"accuracy": accuracy(pred[keep], truth[keep]), "margin": float(np.mean(pred[keep] - truth[keep]))}

    return Evaluation(metrics(np.ones(spk.size, dtype=bool)), n=spk.size, units="utterances", statistic=metrics,
                      groups=list(spk), grouping="speaker")


def test_perfect_accuracy_on_five_speakers_gets_a_bounded_positive_interval_and_a_note() -> None:
    """The defect: 5 speakers x 13 utterances all right gave [1, 1] (zero width) and no word about the 5 groups."""
    rows = metric_rows("m", "sid", "weighted_sum", "test", _sid(5, 1.0), {}, 0.95)
    row = next(r for r in rows if r["metric"] == "accuracy")
    assert row["value"] == 1.0 and row["ci_high"] == 1.0 and 0.5 < row["ci_low"] < 1.0
    assert row["n_groups"] == 5 and row["grouping"] == "speaker" and "Wilson" in row["ci_method"]
    assert "only 5 speaker groups (fewer than 10)" in row["note"]
    assert sorted(row["replicates"]) == [f"s{i}" for i in range(5)] and set(row["replicates"].values()) == {1.0}
    other = next(r for r in rows if r["metric"] == "margin")  # no declared range: the plain jackknife, unbounded
    assert other["ci_method"].startswith("jackknife")


def test_rows_stay_in_range_at_high_accuracy_and_many_speakers_carry_no_note() -> None:
    for speakers in (5, 12):
        for seed in range(20):
            row = metric_rows("m", "sid", "p", "test", _sid(speakers, 0.95, seed), {}, 0.95)[0]
            assert 0.0 <= row["ci_low"] <= row["value"] <= row["ci_high"] <= 1.0 and row["ci_high"] > row["ci_low"]
            assert (row["note"] == "") == (speakers >= 10)


def test_verification_rows_group_trials_by_both_speakers() -> None:
    rng = np.random.default_rng(2)
    enrol, test = rng.integers(0, 12, 400), rng.integers(0, 12, 400)
    labels = (enrol == test).astype(int)
    labels[:4] = [1, 0, 1, 0]
    scores = 2.0 * labels + rng.normal(size=400)
    groups = [(f"s{a}", f"s{b}") if a != b else (f"s{a}",) for a, b in zip(enrol, test)]

    def metrics(keep: np.ndarray) -> dict[str, float]:
        return {"eer": eer(scores[keep], labels[keep]), "min_dcf": min_dcf(scores[keep], labels[keep])}

    ev = Evaluation(metrics(np.ones(400, dtype=bool)), n=400, units="trials", statistic=metrics, groups=groups, grouping="speaker")
    rows = metric_rows("m", "asv", "p", "test", ev, {"eer": False, "min_dcf": False}, 0.95)
    for r in rows:
        assert 0.0 <= r["ci_low"] <= r["value"] <= r["ci_high"] <= 1.0 and r["ci_high"] > r["ci_low"]
        assert r["n_groups"] == 12 and r["grouping"] == "trial speakers" and r["note"] == ""
        # leaving speaker g out drops every trial that involves g
        keep = np.array([all(x != "s3" for x in g) for g in groups])
        assert r["replicates"]["s3"] == pytest.approx(metrics(keep)[r["metric"]])


def test_one_group_and_no_intervals() -> None:
    ev = _sid(1, 0.9)
    row = metric_rows("m", "sid", "p", "test", ev, {}, 0.95)[0]
    assert np.isnan(row["ci_low"]) and row["n_groups"] == 1 and "no interval" in row["note"] and row["replicates"] == {}
    row = metric_rows("m", "sid", "p", "test", _sid(12, 0.9), {}, None)[0]
    assert np.isnan(row["ci_high"]) and row["n_groups"] == 0 and row["ci_method"] == "" and row["grouping"] == "speaker"


def test_write_puts_replicates_beside_metrics(tmp_path: Path) -> None:
    from layerlab.probe.api import _write

    rows = metric_rows("m", "sid", "weighted_sum", "test", _sid(6, 0.9), {}, 0.95)
    rows += metric_rows("m", "sid", "layer_1", "test", _sid(6, 0.8, seed=1), {}, 0.95)
    files = _write(str(tmp_path), rows, [], [])["outputs"]
    assert files["replicates"] == "replicates.parquet"
    metrics = pd.read_parquet(tmp_path / "metrics.parquet")
    reps = pd.read_parquet(tmp_path / "replicates.parquet")
    assert list(metrics.columns) == METRIC_COLUMNS and list(reps.columns) == REPLICATE_COLUMNS
    assert (metrics.n_groups == 6).all() and metrics.note.str.contains("fewer than 10").all()
    assert len(reps) == len(replicate_rows(rows)) == 4 * 6
    acc = reps[(reps.probe == "weighted_sum") & (reps.metric == "accuracy")].set_index("group").value
    assert acc.to_dict() == pytest.approx(rows[0]["replicates"])

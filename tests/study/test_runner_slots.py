"""The study runner's slots: a stage waiting for the one Tune slot must not hold a pool thread others could use."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from layerlab.study import execute, runner
from layerlab.study.plan import Stage, StudyPlan


def test_cka_runs_while_a_second_probe_waits_for_the_tune_slot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = str(tmp_path)
    release_probe = threading.Event()
    events: list[str] = []

    def probe(stage: Stage, ctx: Any) -> dict[str, Any]:
        events.append(f"start {stage.id}")
        if stage.id == "probe/a":
            assert release_probe.wait(20), "the CKA stage never ran beside the first probe"
        return {}

    def cka(stage: Stage, ctx: Any) -> dict[str, Any]:
        events.append(f"start {stage.id}")
        release_probe.set()  # only a CKA stage running concurrently with probe/a lets it finish
        return {}

    monkeypatch.setitem(execute.EXECUTORS, "probe", probe)
    monkeypatch.setitem(execute.EXECUTORS, "cka", cka)
    stages = {s.id: s for s in [
        Stage("probe/a", "probe", {}, [], f"{out}/p/a", fingerprint="1"),
        Stage("probe/b", "probe", {}, [], f"{out}/p/b", fingerprint="2"),
        Stage("cka/c", "cka", {}, [], f"{out}/c", fingerprint="3"),
    ]}
    plan = StudyPlan(config=None, out=out, stages=stages)  # type: ignore[arg-type]
    r = runner.Runner(out, say=lambda line: None, parallel=2)
    try:
        r.run(plan)
    finally:
        r.close()
    assert {k: v["status"] for k, v in r.records.items()} == {"probe/a": "done", "probe/b": "done", "cka/c": "done"}
    assert events.index("start cka/c") < events.index("start probe/b")  # the waiting probe did not take the thread


def _plan(out: str, stages: list[Stage]) -> StudyPlan:
    return StudyPlan(config=None, out=out, stages={s.id: s for s in stages})  # type: ignore[arg-type]


@pytest.mark.parametrize("parallel_train", [1, 2])
def test_trainings_overlap_only_up_to_parallel_train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel_train: int) -> None:
    out = str(tmp_path)
    running, most = [0], [0]
    lock = threading.Lock()
    both = threading.Barrier(2, timeout=3)

    def train(stage: Stage, ctx: Any) -> dict[str, Any]:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            both.wait()  # returns only when the other training runs at the same time
        except threading.BrokenBarrierError:
            pass
        with lock:
            running[0] -= 1
        return {}

    monkeypatch.setitem(execute.EXECUTORS, "train", train)
    plan = _plan(out, [Stage(f"train/{m}", "train", {}, [], f"{out}/t/{m}", fingerprint=m) for m in ("a", "b")])
    r = runner.Runner(out, say=lambda line: None, parallel=2, parallel_train=parallel_train)
    try:
        r.run(plan)
    finally:
        r.close()
    assert [v["status"] for v in r.records.values()] == ["done", "done"]
    assert most[0] == parallel_train


def test_stages_that_gate_more_work_start_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = str(tmp_path)
    order: list[str] = []

    def record(stage: Stage, ctx: Any) -> dict[str, Any]:
        order.append(stage.id)
        return {}

    for kind in ("train", "extract", "cka", "probe"):
        monkeypatch.setitem(execute.EXECUTORS, kind, record)
    stages = [  # plan order puts the leaf comparison first; the training gates an extraction and a probe
        Stage("cka/leaf", "cka", {}, [], f"{out}/c", fingerprint="1"),
        Stage("train/m", "train", {}, [], f"{out}/t", fingerprint="2"),
        Stage("extract/m", "extract", {}, ["train/m"], f"{out}/e", fingerprint="3"),
        Stage("probe/m", "probe", {"runner": "local"}, ["extract/m"], f"{out}/p", fingerprint="4"),
    ]
    assert runner.downstream_counts(_plan(out, stages)) == {"cka/leaf": 0, "train/m": 2, "extract/m": 1, "probe/m": 0}
    r = runner.Runner(out, say=lambda line: None, parallel=1)
    try:
        r.run(_plan(out, stages))
    finally:
        r.close()
    assert order[0] == "train/m" and set(order) == {s.id for s in stages}

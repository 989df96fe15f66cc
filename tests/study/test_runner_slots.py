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

"""Relocatable, verified reuse: markers with paths relative to --out and file entries; damaged stages are recomputed.

The runner runs stand-in executors here (each writes a few files and returns its paths), so the marker and
reuse logic is checked in milliseconds; tests/study/test_study_run.py checks the same on real stages.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from layerlab import artifacts, storage
from layerlab.settings import check, record
from layerlab.study import execute, runner
from layerlab.study.plan import Stage, StudyPlan
from layerlab.study.reuse import OUT_TOKEN, relocatable, resolve


def _stages(out: str) -> list[Stage]:
    return [
        Stage("corpus/d", "corpus", {}, [], f"{out}/corpus/d", fingerprint="c1"),
        Stage("extract/d/m", "extract", {}, ["corpus/d"], f"{out}/cache/d/m", fingerprint="e1"),
        Stage("report", "report", {}, ["corpus/d", "extract/d/m"], f"{out}/report", fingerprint="r1"),
    ]


class Fake:
    """Stand-in executors: each writes files under its stage folder and returns where they are."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        self.seen: dict[str, Any] = {}
        self.existed: dict[str, bool] = {}
        for kind in ("corpus", "extract", "report"):
            monkeypatch.setitem(execute.EXECUTORS, kind, getattr(self, kind))

    def corpus(self, stage: Stage, ctx: Any) -> dict[str, Any]:
        self.calls.append(stage.id)
        storage.atomic_write_bytes(f"{stage.out}/audio.bin", b"a" * 100)
        return {"url": stage.out, "tasks": {"sid": "labels"}}

    def extract(self, stage: Stage, ctx: Any) -> dict[str, Any]:
        self.calls.append(stage.id)
        self.existed[stage.id] = storage.exists(f"{stage.out}/metadata.json")
        self.seen["repairing"] = set(ctx.repairing)
        shard = artifacts.publish_bytes(stage.out, "shard-0.parquet", b"s" * 64)
        storage.write_json(f"{stage.out}/manifest.json", {"format": "cache", "shards": {"0": {"files": {"frames": shard.model_dump()}}}})
        storage.write_json(f"{stage.out}/metadata.json", {"source": ctx.results["corpus/d"]["url"]})
        return {"cache": stage.out, "model_spec": f"ckpt:{stage.out}/model.pt"}

    def report(self, stage: Stage, ctx: Any) -> dict[str, Any]:
        self.calls.append(stage.id)
        self.seen["report_inputs"] = {k: dict(v) for k, v in ctx.results.items()}
        storage.atomic_write_bytes(f"{stage.out}/index.html", b"<html>report</html>")
        return {"html": f"{stage.out}/index.html"}


def _run(out: str, verify: bool = False) -> tuple[runner.Runner, list[str]]:
    lines: list[str] = []
    r = runner.Runner(out, say=lines.append, parallel=1, verify=verify)
    try:
        r.run(StudyPlan(config=None, out=out, stages={s.id: s for s in _stages(out)}))  # type: ignore[arg-type]
    finally:
        r.close()
    return r, lines


def test_relocatable_replaces_the_study_root_inside_strings() -> None:
    result = {"cache": "/a/study/cache/m", "spec": "ckpt:/a/study/train/m/checkpoint.pt", "other": "/a/studyX/y", "root": "/a/study",
              "list": ["/a/study/x", 3]}
    stored = relocatable(result, "/a/study")
    assert stored == {"cache": f"{OUT_TOKEN}/cache/m", "spec": f"ckpt:{OUT_TOKEN}/train/m/checkpoint.pt", "other": "/a/studyX/y",
                      "root": OUT_TOKEN, "list": [f"{OUT_TOKEN}/x", 3]}
    assert resolve(stored, "s3://b/moved")["spec"] == "ckpt:s3://b/moved/train/m/checkpoint.pt"


def test_a_moved_study_reuses_every_stage_and_its_results_point_at_the_new_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                                s3_bucket: str) -> None:
    fake = Fake(monkeypatch)
    first = str(tmp_path / "first")
    _run(first)
    assert fake.calls == ["corpus/d", "extract/d/m", "report"]
    marker = json.loads((tmp_path / "first" / "stages" / "extract__d__m.done.json").read_text())
    assert first not in json.dumps(marker)  # nothing absolute under the study root
    assert marker["out"] == f"{OUT_TOKEN}/cache/d/m" and marker["result"]["model_spec"] == f"ckpt:{OUT_TOKEN}/cache/d/m/model.pt"
    assert {f["name"] for f in marker["files"]} == {"manifest.json", "metadata.json", "shard-0.parquet"}
    assert all(f["bytes"] > 0 and len(f["sha256"]) == 64 for f in marker["files"])

    moved = str(tmp_path / "moved")
    shutil.move(first, moved)  # the original is gone: a reused stage must not point at it
    fake.calls.clear()
    r, lines = _run(moved)
    assert fake.calls == [] and sum(line.startswith("[reuse]") for line in lines) == 3
    assert r.results["extract/d/m"]["cache"] == f"{moved}/cache/d/m"

    (Path(moved) / "report" / "index.html").unlink()  # the report is rebuilt from the reused results, at their new place
    _, lines = _run(moved)
    assert fake.calls == ["report"] and any(line.startswith("[repair] report: ") and "index.html: missing" in line for line in lines)
    assert fake.seen["report_inputs"]["extract/d/m"] == {"cache": f"{moved}/cache/d/m", "model_spec": f"ckpt:{moved}/cache/d/m/model.pt"}

    s3 = f"{s3_bucket}/studies/copied"  # local disk -> s3:// (moto)
    fs, path = storage.url_to_fs(s3)
    fs.put(moved + "/", path, recursive=True)
    fake.calls.clear()
    r, _ = _run(s3)
    assert fake.calls == [] and r.results["corpus/d"]["url"] == f"{s3}/corpus/d"


def test_damaged_outputs_are_recomputed_sizes_always_checksums_with_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(monkeypatch)
    out = str(tmp_path / "study")
    _run(out)
    audio = Path(out) / "corpus" / "d" / "audio.bin"
    audio.write_bytes(b"b" * 100)  # same size, other content: only a checksum sees it
    fake.calls.clear()
    r, _ = _run(out)
    assert fake.calls == [] and not r.records["corpus/d"]["repaired"]
    r, lines = _run(out, verify=True)
    assert fake.calls == ["corpus/d"] and "checksum mismatch" in r.records["corpus/d"]["repaired"]
    assert any(line.startswith("[repair] corpus/d: ") and line.endswith("recomputing the stage") for line in lines)
    assert any(line.startswith("[done] corpus/d in ") and line.endswith("(repaired)") for line in lines)
    assert json.loads((Path(out) / "stages" / "corpus__d.done.json").read_text())["repaired"].endswith("(SHA-256 differs from the record)")
    audio.write_bytes(b"a" * 10)  # truncated: the size check of every rerun sees it
    fake.calls.clear()
    r, _ = _run(out)
    assert fake.calls == ["corpus/d"] and "size 10 bytes, recorded 100" in r.records["corpus/d"]["repaired"]
    assert audio.read_bytes() == b"a" * 100


def test_an_extraction_whose_damage_is_in_listed_shards_resumes_to_redo_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(monkeypatch)
    out = str(tmp_path / "study")
    _run(out)
    (Path(out) / "cache" / "d" / "m" / "shard-0.parquet").write_bytes(b"s" * 10)  # a truncated cache shard
    fake.calls.clear()
    _, lines = _run(out)
    assert fake.calls == ["extract/d/m"] and fake.existed["extract/d/m"]  # resumed, not wiped
    assert fake.seen["repairing"] == {"extract/d/m"}  # the extraction is told to verify every finished shard
    assert any("extracting the damaged shards again" in line for line in lines)
    (Path(out) / "cache" / "d" / "m" / "metadata.json").write_text("{}")  # damage outside the shards: recomputed afresh
    fake.calls.clear()
    _run(out)
    assert fake.calls == ["extract/d/m"] and not fake.existed["extract/d/m"]


def test_a_resumed_stage_whose_folder_holds_other_settings_starts_afresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = str(tmp_path / "study")
    stage = Stage("probe/d/m/sid", "probe", {"runner": "local"}, [], f"{out}/probe/d/m/sid", fingerprint="p2")
    storage.write_json(f"{stage.out}/settings.json", record({"lr": 0.1}))  # an interrupted run of other settings
    storage.write_json(runner.marker_url(out, stage.id, "started"), {"fingerprint": "p2"})
    calls: list[bool] = []

    def probe(st: Stage, ctx: Any) -> dict[str, Any]:
        calls.append(storage.exists(f"{st.out}/settings.json"))
        check(st.out, f"{st.out}/settings.json", {"lr": 0.2}, "probe results")
        storage.write_json(f"{st.out}/settings.json", record({"lr": 0.2}))
        return {}

    monkeypatch.setitem(execute.EXECUTORS, "probe", probe)
    lines: list[str] = []
    r = runner.Runner(out, say=lines.append, parallel=1)
    try:
        r.run(StudyPlan(config=None, out=out, stages={stage.id: stage}))  # type: ignore[arg-type]
    finally:
        r.close()
    assert calls == [True, False] and r.records[stage.id]["status"] == "done"
    assert "[restart] probe/d/m/sid: the settings recorded in its folder differ in lr; starting afresh" in lines

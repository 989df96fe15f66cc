"""Every stage of a study runs as a Ray task; cross-model frame CKA comes from a joint extraction group's side-output.

The IO audit (``LAYERLAB_IO_AUDIT``) logs which process read which file: no process reads a frames tier
for the comparison (the joint states carry it), the study driver reads none at all, and the study's
across-model frame CKA equals CKA computed from the two frames tiers (<= 1e-6; the side-outputs see the
tier's float16 values). Each computed stage records where it ran and its CPU seconds.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from layerlab.study.config import parse_study_config
from layerlab.study.runner import run_study
from study_fixtures import tiny_study


def _io_log(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob("io-*.jsonl")) for line in f.read_text().splitlines()]


def test_study_stages_run_on_workers_and_across_frame_cka_comes_from_the_joint_group(tmp_path: Path, ray_session: None, monkeypatch) -> None:
    from layerlab.cka.pipeline import CKAJob, run_cka
    from layerlab.cka.tables import read_matrix

    audit = tmp_path / "io"
    audit.mkdir()
    monkeypatch.setenv("LAYERLAB_IO_AUDIT", str(audit))
    doc = tiny_study(models={"fbank": {"spec": "fbank"}, "ge2e": {"spec": "ge2e"}},
                     extract={"concurrency": [1, 1], "batch_seconds": 20, "tier": "both", "side_output_dtype": "float16"},
                     cka={"within": {"levels": ["frame"]}, "across": {"levels": ["frame"]}})
    out = tmp_path / "study"
    result = run_study(parse_study_config(doc, "tiny.yaml"), str(out), say=lambda line: None)
    monkeypatch.delenv("LAYERLAB_IO_AUDIT")
    assert not result.failed, result.records
    plan = result.plan
    assert "extract/synth/joint/fbank+ge2e" in plan.stages  # one actor runs both models
    assert plan.stages["extract/synth/fbank"].deps == ["extract/synth/joint/fbank+ge2e"]
    across = result.records["cka/synth/across/fbank__ge2e/frame"]["result"]
    assert across["source"] == "joint extraction side-output"

    reads = [r for r in _io_log(audit) if r["op"] == "read"]
    assert reads and all(r["pid"] != os.getpid() for r in reads if "/cache/" in r["url"])  # the driver never opens a cache file
    tier_reads = [r for r in reads if re.search(r"/cache/synth/[^/]+/frames/", r["url"])]
    assert not tier_reads  # and no process read a frames tier: CKA came from the joint states

    tiers = run_cka(CKAJob(str(out / "cache/synth/fbank"), str(out / "cache/synth/ge2e")), str(tmp_path / "tiers"))
    for got_url, want_url in zip(across["tables"], tiers["tables"]):
        got, want = read_matrix(got_url), read_matrix(want_url)
        assert got[1:3] == want[1:3]
        assert np.abs(got[0] - want[0]).max() <= 1e-6
    assert 0 < float(read_matrix(across["tables"][2])[0].max()) < 1  # a real cross block

    computed = [r for r in result.records.values() if not r["reused"]]
    assert computed and all(r["usage"] and r["usage"]["nodes"] for r in computed)
    for r in computed:  # every unit of work ran in a Ray worker process, never in this driver
        assert all(u["pid"] != os.getpid() and u["node_id"] for u in r["usage"]["units"]), r["id"]
    joint = result.records["extract/synth/joint/fbank+ge2e"]["usage"]
    assert {u["role"] for u in joint["units"]} == {"extract stage task", "model actor"} and joint["cpu_seconds"] > 0
    run = json.loads((out / "run.json").read_text())
    assert run["usage"]["driver_cpu_seconds"] > 0 and 0 < run["usage"]["driver_cpu_share"] < 1
    page = (out / "report" / "index.html").read_text()
    assert "model actor" in page and "CPU s" in page  # the run metadata names the nodes and what ran there

"""A worker node lost mid-extraction on Ray's fake multi-node cluster: the study finishes, nothing is counted twice.

The study driver runs as a subprocess joined to a fake cluster (a 0-CPU head, worker nodes launched on
demand). Once the extraction has finished some shards, the test kills the raylet of the node that hosts a
model actor -- a process this test started (a descendant of its head), by PID. The stage resumes (Ray
restarts the actor elsewhere or re-runs the stage task, which keeps finished shards): the shards finished
before the kill are not extracted again, every utterance is in the cache once, and the within-model CKA
side-output states hold each utterance once (their frame count equals the frames tier's).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "extract"))  # the fake cluster harness, also when tests/study runs alone

from fake_autoscaler import fake_cluster, fake_env  # noqa: E402
from helpers.speech_corpus import build_corpus  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
REPO = Path(__file__).resolve().parents[2]


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _actor_raylet(head_pid: int) -> psutil.Process | None:
    """The raylet (started under our head) whose node hosts a model actor now."""
    for proc in _descendants(head_pid):
        try:
            if "ExtractActor" not in " ".join(proc.cmdline()):
                continue
            for parent in proc.parents():
                if parent.name() == "raylet" or "raylet" in " ".join(parent.cmdline()[:1]):
                    return parent
        except psutil.NoSuchProcess:
            continue
    return None


def _manifest_shards(cache: Path) -> dict[str, dict]:
    try:
        return json.loads((cache / "manifest.json").read_text()).get("shards", {})
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_a_worker_node_lost_mid_extraction_resumes_from_finished_shards(tmp_path: Path) -> None:
    from layerlab.cache import open_cache
    from layerlab.cka.pipeline import CKAJob, run_cka

    data = tmp_path / "data"
    expected = build_corpus(str(data), utterances=48, seed=5, short_ids=(), nan_ids=(), max_shard_bytes=60_000)
    out = tmp_path / "study"
    doc = {"name": "nodeloss", "datasets": {"d": {"path": str(data)}}, "models": {"ge2e": {"spec": "ge2e"}},
           "extract": {"concurrency": [1, 1], "tasks_per_actor": 1, "batch_seconds": 4, "tier": "both", "side_output_dtype": "float16",
                       "num_cpus_per_actor": 1},
           "probe": None, "cka": {"within": {"levels": ["frame"]}, "across": None}}
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(doc))
    cache = out / "cache" / "d" / "ge2e"
    with fake_cluster(tmp_path, worker_resources={"CPU": 1, "GPU": 1}, max_workers=3, min_workers=2, ready_timeout=180) as address:
        head_pid = next(p.pid for p in psutil.process_iter(["cmdline"])
                        if p.info["cmdline"] and "--head" in p.info["cmdline"] and f"--port={address.rsplit(':', 1)[1]}" in p.info["cmdline"])
        env = {**fake_env(), "RAY_ADDRESS": address, "PYTHONPATH": str(REPO)}
        log = open(tmp_path / "driver.log", "wb")
        driver = subprocess.Popen([sys.executable, "-m", "layerlab.cli", "study", str(config), "--out", str(out)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        killed, before = None, {}
        deadline = time.monotonic() + 1200
        while driver.poll() is None and time.monotonic() < deadline:
            done = _manifest_shards(cache)
            if killed is None and done and len(done) < 4:
                raylet = _actor_raylet(head_pid)
                if raylet is not None:
                    before = dict(done)
                    assert head_pid in [p.pid for p in raylet.parents()]  # a process this test started
                    os.kill(raylet.pid, signal.SIGKILL)
                    killed = raylet.pid
            time.sleep(0.2)
        rc = driver.wait(timeout=max(1.0, deadline - time.monotonic()))
        log.close()
    text = (tmp_path / "driver.log").read_text(errors="replace")
    assert rc == 0, text[-4000:]
    assert killed is not None, f"no raylet killed mid-extraction (shards done too fast): {text[-2000:]}"
    reader = open_cache(str(cache))
    assert reader.manifest.complete and len(reader.manifest.shards) > len(before)
    for name, rec in before.items():  # a shard finished before the loss is kept, not extracted again
        assert reader.manifest.shards[name].model_dump(mode="json")["files"] == rec["files"], name
    ids = reader.read_pooled().ids
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids))
    states = reader.cka_states("frames")  # raises IntegrityError on an utterance in two shards' states
    assert set(states) == set(reader.manifest.shards)
    side = json.loads((out / "cka" / "d" / "within" / "ge2e" / "frame" / "summary.json").read_text())
    tier = run_cka(CKAJob(str(cache), level="frame"), str(tmp_path / "tier"))
    assert side["n_frames"] == tier["n_frames"] > 0  # each frame counted once in the side-output states
    run = json.loads((out / "run.json").read_text())
    extract = next(s for s in run["stages"] if s["id"] == "extract/d/ge2e")
    assert extract["status"] == "done"
    print("killed raylet", killed, "after", len(before), "of", len(reader.manifest.shards), "shards; usage", extract["usage"]["nodes"])

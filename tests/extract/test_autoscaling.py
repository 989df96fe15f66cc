"""`layerlab extract` on Ray's fake multi-node autoscaler: a 0-CPU head, GPU worker nodes launched on demand.

Fake GPUs: the worker nodes advertise ``GPU: 1`` and actors hold it, the model runs on CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fake_autoscaler import fake_cluster, fake_env
from helpers.speech_corpus import build_corpus

# a Ray head plus launched worker nodes: ~1-5 min on the shared 2-core machine, so not in the default run
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _layerlab(args: list[str], address: str, timeout: float) -> subprocess.CompletedProcess:
    cmd = [str(Path(sys.executable).with_name("layerlab")), *args]
    env = {**fake_env(), "RAY_ADDRESS": address, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def test_extract_scales_gpu_workers_up_from_zero_and_every_actor_holds_a_gpu(tmp_path: Path):
    root = str(tmp_path / "data")
    expected = build_corpus(root, utterances=8, seed=3, short_ids=(), nan_ids=(), max_shard_bytes=40_000)
    out = tmp_path / "cache"
    summary_path = tmp_path / "summary.json"
    with fake_cluster(tmp_path, worker_resources={"CPU": 1, "GPU": 1}, max_workers=2) as address:
        run = _layerlab(["extract", "--model", "fbank", "--data", root, "--out", str(out), "--device", "auto",
                         "--concurrency", "1,2", "--no-progress", "--summary-json", str(summary_path)], address, timeout=300)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        import ray

        ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        try:
            nodes = ray.nodes()
        finally:
            ray.shutdown()
    summary = json.loads(summary_path.read_text())
    gpu_nodes = {n["NodeID"] for n in nodes if n["Resources"].get("GPU", 0) > 0}
    head = [n for n in nodes if n["Resources"].get("GPU", 0) == 0]
    assert head and len(gpu_nodes) >= 1, nodes  # the head plus worker nodes the autoscaler launched
    assert "autoscaler can launch GPU node types ['worker_node']" in summary["actor_rule"]
    assert summary["actor_resources"] == {"CPU": 1.0, "GPU": 1.0}
    ups = [e for e in summary["actor_events"] if e["event"] == "up"]
    assert ups and all(e["gpu_ids"] for e in ups), ups  # every actor held a GPU
    assert {e["node_id"] for e in ups} <= gpu_nodes  # ... on a launched GPU worker node
    assert all(kinds.keys() == {"gpu"} for kinds in summary["actors_by_node"].values())
    from layerlab.cache import open_cache

    ids = open_cache(str(out)).read_pooled().ids
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids))  # every utterance exactly once
    print("actors per node:", summary["actors_by_node"], "events:", [(e["t"], e["event"], e["actor"]) for e in summary["actor_events"]])


def test_a_gpu_request_the_autoscaler_can_never_meet_is_a_clear_error(tmp_path: Path):
    root = str(tmp_path / "data")
    build_corpus(root, utterances=3, seed=4, short_ids=(), nan_ids=())
    with fake_cluster(tmp_path, worker_resources={"CPU": 1, "GPU": 1}, max_workers=1) as address:
        run = _layerlab(["extract", "--model", "fbank", "--data", root, "--out", str(tmp_path / "cache"), "--device", "cuda",
                         "--gpus-per-actor", "4", "--no-progress"], address, timeout=120)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    err = run.stderr.strip().splitlines()[-1]
    assert err.startswith("error: cannot place model actors") and "'GPU': 4.0" in err and "worker_node" in err

"""Cluster assets agree with the code: launcher config, runtime env, RayJob, container recipe."""

from __future__ import annotations

import shlex
from pathlib import Path

import ray
import yaml

REPO = Path(__file__).resolve().parents[2]


def test_launcher_config_has_cpu_head_and_gpu_workers_from_zero() -> None:
    cfg = yaml.safe_load((REPO / "cluster.yaml").read_text())
    types = cfg["available_node_types"]
    assert types[cfg["head_node_type"]]["resources"] == {"CPU": 0}
    gpu = [t for t in types.values() if t["node_config"]["InstanceType"].startswith(("g5", "g6", "p4", "p5"))]
    assert gpu and all(t["min_workers"] == 0 and t["max_workers"] >= 1 for t in gpu)
    assert ray.__version__ in cfg["docker"]["image"]  # image Ray == client Ray


def test_rayjob_runs_the_paper_study_with_matching_versions() -> None:
    job = yaml.safe_load((REPO / "cluster" / "rayjob.yaml").read_text())
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "jobs/study.py", "configs/paper.yaml"] and (REPO / argv[1]).exists() and (REPO / argv[2]).exists()
    assert argv[argv.index("--out") + 1].startswith("s3://")
    spec = job["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == ray.__version__ and spec["enableInTreeAutoscaling"]
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"])["working_dir"].startswith("s3://")
    images = [c["image"] for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]] for c in g["template"]["spec"]["containers"]]
    assert all(ray.__version__ in image for image in images)


def test_runtime_env_and_container_recipe() -> None:
    env = yaml.safe_load((REPO / "cluster" / "runtime_env.yaml").read_text())
    assert set(env) <= {"excludes", "env_vars", "working_dir", "pip"} and ".git" in env["excludes"]
    docker = (REPO / "cluster" / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{ray.__version__}-py311-gpu" in docker
    for copied in ("pyproject.toml", "requirements.lock", "layerlab"):
        assert copied in docker and (REPO / copied).exists()

"""Actor sizing from the request and the autoscaler's node types (no Ray needed)."""

from __future__ import annotations

import json

import pytest

from layerlab.extract.config import ExtractConfig
from layerlab.extract.resources import (
    AUTOSCALING_CONFIG_ENV,
    autoscaler_node_types,
    decide_gpu,
    infeasible_reason,
    plan_resources,
)

GPU_TYPES = {"head": {"CPU": 0.0}, "gpu_node": {"CPU": 1.0, "GPU": 1.0}}


def test_auto_uses_gpus_an_autoscaler_can_launch_on_a_cluster_without_gpus_now():
    res = plan_resources({"CPU": 0.0}, ExtractConfig(concurrency=(1, 2)), GPU_TYPES)
    assert res.num_gpus == 1.0 and res.num_cpus == 1.0 and res.bundle == {"CPU": 1.0, "GPU": 1.0}
    assert "autoscaler can launch GPU node types ['gpu_node']" in res.rule


def test_auto_without_node_types_falls_back_to_the_cluster_total_and_says_so():
    assert decide_gpu("auto", 2.0, None) == (True, "auto: the cluster has 2 GPUs at start (no autoscaler node types visible)")
    use, rule = decide_gpu("auto", 0.0, None)
    assert not use and "no GPU in the cluster at start" in rule
    use, rule = decide_gpu("auto", 0.0, {"cpu_node": {"CPU": 8.0}})
    assert not use and "no autoscaler node type offers one" in rule


def test_explicit_device_wins_over_the_cluster():
    assert plan_resources({"CPU": 8.0}, ExtractConfig(device="cuda")).num_gpus == 1.0  # requested even with no GPU now
    cpu = plan_resources({"CPU": 8.0, "GPU": 4.0}, ExtractConfig(device="cpu", concurrency=(1, 4)), GPU_TYPES)
    assert cpu.num_gpus == 0.0 and cpu.num_cpus == 2.0 and cpu.rule == "--device cpu requested"
    half = plan_resources({}, ExtractConfig(device="cuda", num_gpus_per_actor=0.5, num_cpus_per_actor=3))
    assert half.bundle == {"CPU": 3.0, "GPU": 0.5} and half.torch_threads == 3
    with pytest.raises(ValueError):
        ExtractConfig(device="tpu")


def test_a_gpu_request_no_node_type_can_hold_is_infeasible_with_the_reason():
    res = plan_resources({}, ExtractConfig(device="cuda", num_gpus_per_actor=4), GPU_TYPES)
    reason = infeasible_reason(res, [{"CPU": 0.0}])
    assert reason is not None and "'GPU': 4.0" in reason and "gpu_node" in reason
    assert infeasible_reason(plan_resources({}, ExtractConfig(device="cuda"), GPU_TYPES), [{"CPU": 0.0}]) is None
    # unknown autoscaler: never declared infeasible up front (the bounded wait decides)
    assert infeasible_reason(plan_resources({}, ExtractConfig(device="cuda")), [{"CPU": 4.0}]) is None
    # a live node that fits is enough
    assert infeasible_reason(res, [{"CPU": 8.0, "GPU": 8.0}]) is None


def test_node_types_are_read_from_an_autoscaling_config_file(tmp_path, monkeypatch):
    cfg = {"head_node_type": "head", "available_node_types": {
        "head": {"resources": {"CPU": 0}, "max_workers": 0},
        "gpu_node": {"resources": {"CPU": 4, "GPU": 1}, "min_workers": 0, "max_workers": 3},
        "disabled": {"resources": {"CPU": 4, "GPU": 8}, "max_workers": 0}}}
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(cfg))
    monkeypatch.setenv(AUTOSCALING_CONFIG_ENV, str(path))
    types, source = autoscaler_node_types()
    assert types == {"head": {"CPU": 0.0}, "gpu_node": {"CPU": 4.0, "GPU": 1.0}}
    assert AUTOSCALING_CONFIG_ENV in source

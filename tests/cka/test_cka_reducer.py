"""Reducer: idempotent per shard, tree merge, checkpoint to real (moto) S3, survives being killed."""

from __future__ import annotations

import os

import numpy as np
import pytest
from cka_helpers import layer_stack

from layerlab.accumulator import merge_all
from layerlab.cka import FeatureCKA, MinibatchCKA, pilot_shift
from layerlab.cka.reduction import CKAReduction
from layerlab.cka.state_io import state_from_bytes, state_to_bytes

DIMS = [6, 10, 6]


def _shard_states(num: int, seed: int = 0) -> dict[str, dict]:
    layers = layer_stack(40 * num, DIMS, seed=seed)
    shift = pilot_shift([x[:50] for x in layers])
    states = {}
    for i in range(num):
        acc = FeatureCKA(DIMS, shift=shift)
        acc.update([x[40 * i : 40 * (i + 1)] for x in layers])
        states[f"shard-{i:03d}"] = acc.state_dict()
    return states


def _single_process(states: dict[str, dict]) -> np.ndarray:
    return merge_all([FeatureCKA.from_state_dict(s) for s in states.values()]).compute()


def test_state_bytes_round_trip():
    mb = MinibatchCKA([3, 4], batch_size=8, seed=2)
    mb.update([np.random.default_rng(0).standard_normal((13, d)) for d in (3, 4)])
    back = state_from_bytes(state_to_bytes(mb.state_dict()))
    assert back["rng"] == mb.state_dict()["rng"]
    np.testing.assert_array_equal(back["pool"][1], mb.state_dict()["pool"][1])


def test_duplicates_ignored_and_tree_merge_matches(tmp_path):
    states = _shard_states(11)
    red = CKAReduction(str(tmp_path / "ckpt.npz"), checkpoint_every=4, fanout=3)
    for sid, st in states.items():
        assert red.add(sid, st) is True
    assert red.add("shard-004", states["shard-004"]) is False
    np.testing.assert_allclose(red.result(), _single_process(states), atol=1e-12)
    with pytest.raises(ValueError, match="shard x"):
        red.add("x", MinibatchCKA(DIMS).state_dict())


def test_an_utterance_in_two_shard_states_is_refused_also_after_a_resume(tmp_path):
    """Shard states carry no rows: without the ids sent with them, a shard read twice was merged twice."""
    from layerlab.artifacts import IntegrityError

    states = _shard_states(3)
    ckpt = str(tmp_path / "ckpt.npz")
    red = CKAReduction(checkpoint_url=ckpt, checkpoint_every=1)
    assert red.add("shard-000", states["shard-000"], ids=["u0", "u1"])
    with pytest.raises(IntegrityError, match="'u1' appears twice \\(shards shard-000 and shard-001\\)"):
        red.add("shard-001", states["shard-001"], ids=["u2", "u1"])
    assert red.committed_shards() == ["shard-000"]
    resumed = CKAReduction(checkpoint_url=ckpt)  # the ids are checkpointed with the state
    with pytest.raises(IntegrityError, match="'u0' appears twice"):
        resumed.add("shard-002", states["shard-002"], ids=["u0"])
    assert resumed.add("shard-001", states["shard-001"], ids=["u2", "u3"])  # nothing of the refused call was kept


def test_checkpoint_on_s3_and_resume(s3_bucket):
    states = _shard_states(6)
    url = f"{s3_bucket}/cka/reducer.npz"
    first = CKAReduction(url, checkpoint_every=2)
    for sid in list(states)[:5]:
        first.add(sid, states[sid])
    assert first.committed_shards() == sorted(states)[:4]  # the 5th is not in a checkpoint yet
    again = CKAReduction(url)  # a restarted reducer
    assert again.resumed and again.committed_shards() == sorted(states)[:4]
    for sid, st in states.items():
        again.add(sid, st)
    np.testing.assert_allclose(again.result(), _single_process(states), atol=1e-12)


def test_killed_reducer_actor_gives_single_process_result(ray_session, s3_bucket):
    import ray

    from layerlab.cka.reducer import send_until_committed, start_reducer

    states = _shard_states(16, seed=1)
    env = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")}
    reducer = start_reducer(f"{s3_bucket}/cka/ckpt.npz", checkpoint_every=3, fanout=4, env_vars=env)
    ids = sorted(states)
    before = ray.get(reducer.info.remote())
    ray.get([reducer.add.remote(sid, states[sid]) for sid in ids[:8]])
    ray.kill(reducer, no_restart=False)  # crash mid-stream; Ray restarts it from the checkpoint
    ray.get([reducer.add.remote(sid, states[sid]) for sid in ids[5:12]])  # overlaps: resent shards
    after = ray.get(reducer.info.remote())
    assert after["pid"] != before["pid"] and after["resumed"]
    committed = send_until_committed(reducer, states)
    assert committed == ids
    np.testing.assert_allclose(ray.get(reducer.result.remote()), _single_process(states), atol=1e-12)
    ray.kill(reducer, no_restart=True)

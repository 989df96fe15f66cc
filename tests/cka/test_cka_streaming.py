"""Streaming == one-shot: uneven shards, empty shards, merge orders, state round trips, padding, offsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cka_helpers import layer_stack, pad_utterances

from layerlab.accumulator import Accumulator, merge_all
from layerlab.cka import FeatureCKA, MinibatchCKA, cka_matrix, pilot_shift
from layerlab.cka.feature_stats import FAST_MATMUL_ABS_ERROR

DIMS = [9, 16, 9]


@pytest.fixture(scope="module")
def layers() -> list[np.ndarray]:
    return layer_stack(500, DIMS, seed=7)


def _random_cuts(n: int, parts: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    cuts = np.sort(rng.integers(0, n + 1, size=parts - 1))
    edges = [0, *cuts.tolist(), n]
    return list(zip(edges[:-1], edges[1:]))


@pytest.mark.parametrize("mode", ["within", "cross", "joint"])
def test_sharded_merge_equals_one_shot(layers, mode):
    rng = np.random.default_rng(0)
    dims_b = None if mode == "within" else DIMS[1:]
    dims_a = DIMS if mode == "within" else DIMS[:1]
    shift = pilot_shift([x[:32] for x in layers])
    cuts = _random_cuts(500, 9, rng) + [(0, 0), (250, 250)]  # uneven, plus empty shards
    parts = []
    for lo, hi in cuts:
        acc = FeatureCKA(dims_a, dims_b, mode=mode, shift=shift)
        # feed the shard in random-sized batches
        start = lo
        while start < hi:
            stop = min(hi, start + int(rng.integers(1, 80)))
            acc.update([x[start:stop] for x in layers])
            start = stop
        parts.append(acc)
    assert sum(p.n for p in parts) == 500 and any(p.n == 0 for p in parts)
    states = [p.state_dict() for p in parts]
    results = []
    for order_seed in range(3):
        order = np.random.default_rng(order_seed).permutation(len(states))
        rebuilt = [FeatureCKA.from_state_dict(states[i]) for i in order]
        results.append(merge_all(rebuilt))
    sequential = FeatureCKA.from_state_dict(states[0])
    for st in states[1:]:
        sequential.merge(FeatureCKA.from_state_dict(st))
    results.append(sequential)
    one_shot_b = cka_matrix(layers[:1], layers[1:]) if mode == "cross" else cka_matrix(layers)
    one_shot_d = cka_matrix(layers[:1], layers[1:], estimator="debiased") if mode == "cross" else cka_matrix(layers, estimator="debiased")
    for res in results:
        assert isinstance(res, Accumulator)
        np.testing.assert_allclose(res.using("biased").compute(), one_shot_b, atol=1e-12, rtol=0)
        np.testing.assert_allclose(res.using("debiased").compute(), one_shot_d, atol=1e-12, rtol=0)


def test_merge_with_different_shifts_is_refused(layers):
    a = FeatureCKA(DIMS)
    b = FeatureCKA(DIMS)
    a.update([x[:100] for x in layers])
    b.update([x[100:] for x in layers])
    with pytest.raises(ValueError, match="different shifts"):
        a.merge(b)


def test_padded_batches_equal_unpadded_concatenation(layers):
    lengths = [37, 5, 120, 1, 64, 73]
    n = sum(lengths)
    flat = [x[:n] for x in layers]
    padded, lens = pad_utterances(flat, lengths)
    acc = FeatureCKA(DIMS)
    acc.update([torch.from_numpy(p) for p in padded], lengths=torch.from_numpy(lens))
    assert acc.n == n
    for est in ("biased", "debiased"):
        np.testing.assert_allclose(acc.using(est).compute(), cka_matrix(flat, estimator=est), atol=1e-12)
    mb = MinibatchCKA(DIMS, batch_size=64, buffer_batches=100, seed=1)
    mb.update(padded, lengths=lens)
    np.testing.assert_allclose(mb.compute(), cka_matrix(flat, estimator="minibatch", batch_size=64, seed=1), atol=1e-12)


def test_large_offset_float32_input_matches_float64():
    x64 = layer_stack(4000, [16, 16], seed=2, offset=1e3)
    x32 = [x.astype(np.float32) for x in x64]
    truth = cka_matrix([x.astype(np.float64) for x in x32])  # float64 answer on the same (rounded) inputs
    acc = FeatureCKA([16, 16])  # shift = first batch mean, data arrive as float32 batches
    for s in range(0, 4000, 512):
        acc.update([torch.from_numpy(x[s : s + 512]) for x in x32])
    assert abs(acc.compute()[0, 1] - truth[0, 1]) < 1e-5
    # the naive float32 raw-sum method fails here, so this test can detect the problem it guards
    raw = [torch.from_numpy(x) for x in x32]
    sums = [r.sum(0) for r in raw]
    c01 = raw[0].T @ raw[1] - torch.outer(sums[0], sums[1]) / 4000
    c00 = raw[0].T @ raw[0] - torch.outer(sums[0], sums[0]) / 4000
    c11 = raw[1].T @ raw[1] - torch.outer(sums[1], sums[1]) / 4000
    naive = float(c01.square().sum() / (c00.square().sum().sqrt() * c11.square().sum().sqrt()))
    assert abs(naive - truth[0, 1]) > 1e-3


def test_fast_matmul_within_documented_bound(layers):
    shifted = [x + 1e3 for x in layers]
    exact = FeatureCKA(DIMS, shift=pilot_shift([x[:64] for x in shifted]))
    fast = FeatureCKA(DIMS, shift=pilot_shift([x[:64] for x in shifted]), fast_matmul=True)
    for acc in (exact, fast):
        acc.update(shifted)
    for est in ("biased", "debiased"):
        err = np.abs(fast.using(est).compute() - exact.using(est).compute()).max()
        assert err < FAST_MATMUL_ABS_ERROR
    assert fast.state_dict()["fast_matmul"] is True


def test_utterance_level_on_pooled_means(layers):
    from layerlab.cka.align import utterance_means

    lengths = [30, 50, 20, 40, 60, 25, 35, 45, 55, 15]
    padded, lens = pad_utterances([x[:375] for x in layers], lengths)
    means = utterance_means(padded, lens)
    starts = np.cumsum([0] + lengths)
    expect0 = np.stack([layers[0][starts[i] : starts[i + 1]].mean(0) for i in range(len(lengths))])
    np.testing.assert_allclose(means[0].numpy(), expect0, atol=1e-12)
    assert cka_matrix(means).shape == (3, 3)

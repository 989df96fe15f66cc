"""Nguyen et al. minibatch CKA: one-GEMM path vs a per-pair Song-formula loop, batch rules, shuffling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cka_helpers import layer_stack

from layerlab.cka import MinibatchCKA, cka_matrix
from layerlab.cka import reference as ref
from layerlab.cka.minibatch import u_centred_grams


def _per_pair_loop(xs, ys, batch_size):
    """Straight definition: for each batch and each pair, HSIC_1 from raw Gram matrices (Song eq. 5)."""
    n = xs[0].shape[0]
    hxy = np.zeros((len(xs), len(ys)))
    hxx = np.zeros(len(xs))
    hyy = np.zeros(len(ys))
    for s in range(0, n - n % batch_size, batch_size):
        kx = [ref.gram_linear(x[s : s + batch_size]) for x in xs]
        ky = [ref.gram_linear(y[s : s + batch_size]) for y in ys]
        for a in range(len(xs)):
            hxx[a] += ref.hsic1(kx[a], kx[a])
            for b in range(len(ys)):
                hxy[a, b] += ref.hsic1(kx[a], ky[b])
        for b in range(len(ys)):
            hyy[b] += ref.hsic1(ky[b], ky[b])
    return hxy / np.sqrt(hxx[:, None] * hyy[None, :])


@pytest.mark.parametrize("cross", [False, True])
def test_gemm_path_equals_per_pair_loop(cross):
    layers = layer_stack(240, [6, 10, 6, 8], seed=4)
    xs, ys = (layers[:2], layers[2:]) if cross else (layers, layers)
    acc = MinibatchCKA([x.shape[1] for x in xs], [y.shape[1] for y in ys] if cross else None, batch_size=48)
    for s in range(0, 240, 48):  # feed fixed batches straight in, same order as the loop
        acc.update_batch([x[s : s + 48] for x in (xs + ys if cross else xs)])
    np.testing.assert_allclose(acc.compute(), _per_pair_loop(xs, ys, 48), atol=1e-10, rtol=0)
    assert acc.num_batches == 5


def test_u_centring_matches_song_formula():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 5)), rng.standard_normal((20, 3)) + 100.0
    grams = u_centred_grams([torch.from_numpy(x), torch.from_numpy(y)])
    assert abs(float(grams[0] @ grams[1]) / (20 * 17) - ref.hsic1(ref.gram_linear(x), ref.gram_linear(y))) < 1e-9


def test_small_batches_rejected():
    with pytest.raises(ValueError, match="batch_size"):
        MinibatchCKA([4], batch_size=3)
    acc = MinibatchCKA([4], batch_size=8)
    with pytest.raises(ValueError, match="at least 4 frames"):
        acc.update_batch([np.zeros((3, 4))])


def test_short_final_batch_dropped_below_four_frames():
    layers = layer_stack(2 * 16 + 3, [4, 4], seed=1)
    acc = MinibatchCKA([4, 4], batch_size=16)
    acc.update(layers)
    acc.compute()
    assert acc.num_batches == 2 and acc.dropped_frames == 3


def test_shuffle_buffer_mixes_utterances():
    """With a strong utterance-level component, one-utterance batches measure something else."""
    rng = np.random.default_rng(2)
    utts, frames = 60, 64
    spk = 2.0 * np.repeat(rng.standard_normal((utts, 6)), frames, axis=0)
    local = rng.standard_normal((utts * frames, 6))
    x = np.concatenate([spk, local], axis=1) @ rng.standard_normal((12, 10))
    y = np.concatenate([spk, rng.standard_normal((utts * frames, 6))], axis=1) @ rng.standard_normal((12, 10))
    full = cka_matrix([x], [y], estimator="debiased")[0, 0]
    shuffled = MinibatchCKA([10], [10], batch_size=frames, buffer_batches=16, seed=0)
    in_order = MinibatchCKA([10], [10], batch_size=frames, buffer_batches=16, seed=0)
    for u in range(utts):
        sl = slice(u * frames, (u + 1) * frames)
        shuffled.update([x[sl], y[sl]])
        in_order.update_batch([x[sl], y[sl]])
    assert abs(shuffled.compute()[0, 0] - full) < 0.05
    assert abs(in_order.compute()[0, 0] - full) > 0.2


def test_state_round_trip_and_merge_keeps_sums():
    layers = layer_stack(300, [5, 7], seed=9)
    a = MinibatchCKA([5, 7], batch_size=32, buffer_batches=2, seed=3)
    b = MinibatchCKA([5, 7], batch_size=32, buffer_batches=2, seed=4)
    a.update([x[:170] for x in layers])
    b.update([x[170:] for x in layers])
    rebuilt = MinibatchCKA.from_state_dict(a.state_dict())
    rebuilt.merge(MinibatchCKA.from_state_dict(b.state_dict()))
    a.merge(b)
    np.testing.assert_allclose(rebuilt.compute(), a.compute(), atol=1e-12)
    assert a.num_batches == 300 // 32 + 1 and a.dropped_frames == 0  # 9 full batches + a final one of 12

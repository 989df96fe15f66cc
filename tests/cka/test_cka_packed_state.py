"""FeatureCKA keeps only the upper block triangle (stated memory formula), reads old full-square states, and selects layer blocks."""

from __future__ import annotations

import numpy as np
import torch

from layerlab.cka import FeatureCKA


def _data(dims, n=300, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 4))
    return [torch.from_numpy(base @ rng.standard_normal((4, d)) + 0.5 * rng.standard_normal((n, d)) + 3.0) for d in dims]


def test_memory_is_the_packed_upper_block_triangle():
    dims = [3, 5, 2]
    acc = FeatureCKA(dims)
    width, num, offsets = sum(dims), len(dims), np.cumsum([0] + dims)
    packed = sum(d * (width - offsets[a]) for a, d in enumerate(dims))
    assert acc.state_bytes() == 8 * (packed + num * num + num + (num + 1) * width)
    assert packed < width * width  # the lower block triangle is never allocated
    cross = FeatureCKA([3], [5, 2])
    assert cross.state_bytes() == 8 * (3 * 7 + sum(d * d for d in dims) + num * num + num + (num + 1) * width)


def test_a_state_with_the_full_square_loads_and_computes_the_same():
    dims = [3, 5, 2]
    acc = FeatureCKA(dims, estimator="debiased")
    acc.update(_data(dims))
    state = acc.state_dict()
    width, offsets = sum(dims), np.cumsum([0] + dims)
    full = np.zeros((width, width))
    for a, row in enumerate(state["M"]):
        full[offsets[a] : offsets[a + 1], offsets[a] :] = row
    old = dict(state, M=full)  # what states looked like before packing
    again = FeatureCKA.from_state_dict(old)
    assert np.abs(again.compute() - acc.compute()).max() < 1e-12


def test_select_reads_any_layers_in_any_order_as_a_joint_state():
    dims = [3, 5, 2, 4]
    data = _data(dims, seed=1)
    acc = FeatureCKA(dims)
    acc.update(data)
    order = [3, 0, 2]  # A = layers 3 and 0, B = layer 2: reversed and skipping layer 1
    picked = acc.select(order, num_a=2)
    ref = FeatureCKA([dims[3], dims[0]], [dims[2]], mode="joint", shift=torch.cat([acc.shift[sum(dims[:i]):sum(dims[: i + 1])] for i in order]))
    ref.update([data[i] for i in order])
    for est in ("biased", "debiased"):
        assert np.abs(picked.using(est).compute() - ref.using(est).compute()).max() < 1e-10
    assert picked.dims_a == [4, 3] and picked.dims_b == [2]

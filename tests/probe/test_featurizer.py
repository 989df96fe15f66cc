"""The weighted sum equals s3prl's Featurizer; projections, importance and frame alignment behave as documented."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from layerlab.probe.featurizer import WeightedSum, align_frames, rms_norms


def _s3prl_featurizer(num_layers: int, dim: int, normalize: bool):
    from s3prl.nn.upstream import Featurizer

    # Featurizer reads only these attributes of the upstream at construction
    upstream = SimpleNamespace(num_layers=num_layers, hidden_sizes=[dim] * num_layers, downsample_rates=[320] * num_layers)
    return Featurizer(upstream, normalize=normalize)


@pytest.mark.parametrize("normalize", [False, True])
def test_weighted_sum_equals_s3prl_featurizer(normalize: bool) -> None:
    torch.manual_seed(0)
    L, B, T, D = 5, 3, 17, 24
    hs = [torch.randn(B, T, D) * (1 + 3 * k) + k for k in range(L)]
    lens = torch.tensor([17, 11, 5])
    ours = WeightedSum([D] * L, normalize=normalize)
    ref = _s3prl_featurizer(L, D, normalize)
    with torch.no_grad():
        w = torch.randn(L)
        ours.weights.copy_(w)
        ref.weights.copy_(w)
    ref_out, ref_len = ref(hs, [lens] * L)
    ours_out = ours(hs)
    assert torch.equal(ref_len, lens)
    assert (ours_out - ref_out).abs().max().item() <= 1e-6
    assert not torch.allclose(ours_out, hs[0])  # the sum really mixes layers


def test_zero_init_is_uniform_and_single_layer_bypasses() -> None:
    ws = WeightedSum([8, 8, 8])
    np.testing.assert_allclose(ws.softmax_weights(), [1 / 3] * 3)
    one = WeightedSum([8])
    x = torch.randn(2, 5, 8)
    assert torch.equal(one([x]), x)


def test_mixed_widths_get_projections_and_norm_corrected_importance() -> None:
    ws = WeightedSum([4, 16, 8])
    assert ws.proj is not None and ws.out_dim == 16
    out = ws([torch.randn(2, 3, 4), torch.randn(2, 3, 16), torch.randn(2, 3, 8)])
    assert out.shape == (2, 3, 16)
    with torch.no_grad():
        ws.proj[1].weight.mul_(10.0)  # layer 1 is amplified 10x by its projection
    raw, corrected = ws.importance()
    np.testing.assert_allclose(raw, 1 / 3)
    assert corrected[1] > 0.7 and abs(corrected.sum() - 1) < 1e-12


def test_equal_width_importance_uses_activation_norms() -> None:
    rng = np.random.default_rng(0)
    means = [rng.normal(size=(50, 6)) * s for s in (1.0, 10.0)]
    stds = [np.abs(rng.normal(size=(50, 6))) * s for s in (1.0, 10.0)]
    scales = rms_norms(means, stds)
    expect = [np.sqrt(np.mean((m**2).sum(1) + (s**2).sum(1))) for m, s in zip(means, stds)]
    np.testing.assert_allclose(scales, expect)
    _, corrected = WeightedSum([6, 6]).importance(scales)
    np.testing.assert_allclose(corrected, np.asarray(expect) / sum(expect))


def test_align_frames_maps_rates_and_repeats_utterance_vectors() -> None:
    fast = np.arange(10, dtype=np.float32)[:, None]
    slow = np.arange(5, dtype=np.float32)[:, None]
    emb = np.array([[7.0]], dtype=np.float32)
    a, b, c = align_frames([fast, slow, emb], [100.0, 50.0, None])
    assert a.shape == b.shape == c.shape == (10, 1)
    np.testing.assert_array_equal(b[:, 0], [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    assert (c == 7).all()

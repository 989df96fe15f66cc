"""The weighted sum equals s3prl's Featurizer; projections, importance and frame alignment behave as documented."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from layerlab.probe.featurizer import WeightedSum, align_frames, layer_scales, rms_norms


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


def _frames(scales: list[float], utts: int = 40, t: int = 12, dim: int = 6, seed: int = 0) -> list[torch.Tensor]:
    """Per-layer ``[utts, t, dim]`` frames: layer l is an utterance mean plus within-utterance noise, times ``scales[l]``."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(utts, 1, dim, generator=g) + 0.5 * torch.randn(utts, t, dim, generator=g)) * s for s in scales]


def _pooled(frames: list[torch.Tensor]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return [f.mean(1).double().numpy() for f in frames], [f.std(1, unbiased=False).double().numpy() for f in frames]


def test_mixed_widths_get_projections_and_contribution_follows_the_projection() -> None:
    ws = WeightedSum([4, 16, 8])
    assert ws.proj is not None and ws.out_dim == 16
    out = ws([torch.randn(2, 3, 4), torch.randn(2, 3, 16), torch.randn(2, 3, 8)])
    assert out.shape == (2, 3, 16)
    with torch.no_grad():
        ws.proj[1].weight.mul_(10.0)  # layer 1 is amplified 10x by its projection
    g = torch.Generator().manual_seed(1)
    frames = [torch.randn(30, 9, d, generator=g) for d in (4, 16, 8)]
    raw, share = ws.importance(ws.spread_frames([(frames, torch.full((30,), 9))]))
    np.testing.assert_allclose(raw, 1 / 3)
    assert share[1] > 0.7 and abs(share.sum() - 1) < 1e-12


def test_contribution_counts_activation_norms_not_just_softmax_weights() -> None:
    """A layer with a tiny softmax weight but a huge activation norm contributes most; a layer scaled to zero contributes nothing."""
    frames = _frames([1000.0, 1.0, 1.0, 0.0])
    ws = WeightedSum([6] * 4)  # SUPERB's raw sum: nothing rescales the loud layer
    with torch.no_grad():
        ws.weights.copy_(torch.tensor([-4.0, 0.0, 0.0, 0.0]))
    raw = ws.softmax_weights()
    assert raw[0] < 0.01
    spread = ws.spread_frames([(frames, torch.full((40,), 12))])
    share = ws.contribution(spread)
    assert share[0] > 0.8 and share[3] == 0.0 and abs(share.sum() - 1) < 1e-12
    # the pooled tier gives the same spreads exactly when there is no projection (equal lengths: frame = utterance weighting)
    np.testing.assert_allclose(ws.spread_pooled(*_pooled(frames)), spread, rtol=1e-6, atol=1e-9)


def test_scale_mode_equalises_layers_and_its_contributions() -> None:
    frames = _frames([100.0, 1.0, 0.01])
    means, stds = _pooled(frames)
    ws = WeightedSum([6] * 3, normalize="scale", scales=layer_scales(means, stds))
    for i, h in enumerate(frames):  # every scaled layer varies by D in total about its mean (its offset is left to the head's bias)
        x = ws.normalized(i, h).reshape(-1, 6).double()
        np.testing.assert_allclose(float((x - x.mean(0)).pow(2).sum(-1).mean()), 6.0, rtol=1e-4)
    share = ws.contribution(ws.spread_pooled(means, stds))
    np.testing.assert_allclose(share, 1 / 3, atol=0.05)
    # scalars commute with mean pooling: the pooled tier stays exact
    pooled_out = ws([torch.from_numpy(m).float() for m in means])
    torch.testing.assert_close(pooled_out, ws(frames).mean(1), rtol=1e-4, atol=1e-4)


def test_pooled_spread_through_a_projection_is_exact_between_utterances() -> None:
    frames = [f[:, :1].expand(-1, 5, -1) for f in _frames([3.0, 0.5])]  # constant within each utterance
    frames = [frames[0], frames[1][..., :4]]
    ws = WeightedSum([6, 4], normalize="none", project_to=8)
    np.testing.assert_allclose(ws.spread_pooled(*_pooled(frames)), ws.spread_frames([(frames, torch.full((40,), 5))]), rtol=1e-5)


def test_normalize_modes_and_old_booleans() -> None:
    from layerlab.probe.config import ProbeConfig

    assert ProbeConfig().normalize == "auto"
    assert ProbeConfig().for_tier(reads_frames=True).normalize == "layer_norm"
    assert ProbeConfig().for_tier(reads_frames=False).normalize == "scale"
    assert ProbeConfig(normalize="none").for_tier(reads_frames=True).normalize == "none"
    assert ProbeConfig(normalize=True).normalize == "layer_norm"
    assert ProbeConfig(normalize=False).normalize == "none"
    with pytest.raises(ValueError):
        ProbeConfig(normalize="rms")
    assert WeightedSum([3, 3], normalize=True).normalize and WeightedSum([3, 3], normalize=False).mode == "none"


def test_rms_norms_are_exact_from_pooled_stats() -> None:
    frames = _frames([1.0, 10.0])
    exact = [float(f.double().pow(2).sum(-1).mean().sqrt()) for f in frames]
    np.testing.assert_allclose(rms_norms(*_pooled(frames)), exact, rtol=1e-6)


def test_align_frames_maps_rates_and_repeats_utterance_vectors() -> None:
    fast = np.arange(10, dtype=np.float32)[:, None]
    slow = np.arange(5, dtype=np.float32)[:, None]
    emb = np.array([[7.0]], dtype=np.float32)
    a, b, c = align_frames([fast, slow, emb], [100.0, 50.0, None])
    assert a.shape == b.shape == c.shape == (10, 1)
    np.testing.assert_array_equal(b[:, 0], [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    assert (c == 7).all()

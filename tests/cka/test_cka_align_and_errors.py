"""Frame-rate alignment, silence masks, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerlab.cka import FeatureCKA, cka_matrix
from layerlab.cka.align import flatten_frames


def test_faster_layer_is_average_pooled_to_slower_rate():
    rng = np.random.default_rng(0)
    slow = rng.standard_normal((2, 10, 3))  # 50 Hz
    fast = rng.standard_normal((2, 21, 4))  # 100 Hz, one extra frame
    lengths = [np.array([10, 6]), np.array([21, 13])]
    out = flatten_frames([slow, fast], lengths, frame_rates_hz=[50.0, 100.0])
    assert out[0].shape == (16, 3) and out[1].shape == (16, 4)
    np.testing.assert_allclose(out[1][0].numpy(), fast[0, 0:2].mean(0))
    np.testing.assert_allclose(out[1][10 + 5].numpy(), fast[1, 10:12].mean(0))  # utt 1, frame 5


def test_silence_mask_excludes_frames():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 8, 2))
    mask = np.array([[True, False, True, True, False, True, True, True]])
    out = flatten_frames([x], np.array([7]), frame_mask=mask)
    np.testing.assert_allclose(out[0].numpy(), x[0, [0, 2, 3, 5, 6]])


def test_bad_inputs_name_the_argument():
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match="layers: layer 1 has 9 rows"):
        cka_matrix([x, np.zeros((9, 3))])
    with pytest.raises(ValueError, match=r"layers_a\[0\]"):
        cka_matrix([np.zeros(10)])
    with pytest.raises(ValueError, match="estimator"):
        cka_matrix([x], estimator="rbf")
    with pytest.raises(ValueError, match="frame_rates_hz"):
        flatten_frames([np.zeros((1, 10, 2)), np.zeros((1, 20, 2))])
    with pytest.raises(ValueError, match="not an integer multiple"):
        flatten_frames([np.zeros((1, 10, 2)), np.zeros((1, 20, 2))], frame_rates_hz=[50, 75])
    with pytest.raises(ValueError, match="lengths"):
        flatten_frames([np.zeros((2, 10, 2))], np.array([4, 11]))
    acc = FeatureCKA([3])
    with pytest.raises(ValueError, match="layer 0 has dim 4"):
        acc.update([np.zeros((5, 4))])
    with pytest.raises(ValueError, match="NaN"):
        acc.update([np.full((5, 3), np.nan)])
    with pytest.raises(ValueError, match="at least 2 frames"):
        acc.compute()


def test_constant_layer_gives_nan_with_warning():
    rng = np.random.default_rng(0)
    with pytest.warns(RuntimeWarning, match="zero"):
        mat = cka_matrix([rng.standard_normal((50, 3)), np.ones((50, 2))])
    assert np.isnan(mat[1]).all() and mat[0, 0] == pytest.approx(1.0)


def test_torch_and_numpy_inputs_agree():
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((64, 5)) for _ in range(3)]
    np.testing.assert_array_equal(cka_matrix(xs), cka_matrix([torch.from_numpy(x) for x in xs]))

"""Published values of Kornblith et al. 2019 (their demo: seed 1337, X ~ N(0,1)^{100x10}, Y = X + N(0,1))."""

from __future__ import annotations

import numpy as np
import pytest

from layerlab.cka import cka_matrix
from layerlab.cka import reference as ref


@pytest.fixture()
def demo_inputs() -> tuple[np.ndarray, np.ndarray]:
    np.random.seed(1337)
    x = np.random.randn(100, 10)
    y = np.random.randn(100, 10) + x
    return x, y


def test_published_linear_cka(demo_inputs):
    x, y = demo_inputs
    assert round(float(cka_matrix([x], [y])[0, 0]), 5) == 0.55761
    assert round(ref.cka_gram(ref.gram_linear(x), ref.gram_linear(y)), 5) == 0.55761


def test_published_debiased_cka(demo_inputs):
    x, y = demo_inputs
    assert round(float(cka_matrix([x], [y], estimator="debiased")[0, 0]), 5) == 0.51346
    assert round(ref.cka_gram(ref.gram_linear(x), ref.gram_linear(y), debiased=True), 5) == 0.51346


def test_published_rbf_cka(demo_inputs):
    x, y = demo_inputs
    assert round(ref.cka_gram(ref.gram_rbf(x, 0.5), ref.gram_rbf(y, 0.5)), 5) == 0.65483

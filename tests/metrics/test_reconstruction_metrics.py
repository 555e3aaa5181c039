"""MSE, R² (fraction of variance explained) and L0."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import r2_score

from dictlab.metrics import l0, mse, r2


def test_r2_is_one_for_perfect_and_zero_for_the_mean():
    y = torch.randn(50, 7, generator=torch.Generator().manual_seed(0))
    assert r2(y, y) == 1.0
    assert r2(y, y.mean(dim=0, keepdim=True).expand_as(y)) == pytest.approx(0.0, abs=1e-12)


def test_r2_is_the_variance_weighted_sklearn_score():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(80, 5)) * np.array([1.0, 2.0, 0.5, 3.0, 1.0]) + 4.0
    y_hat = y + rng.normal(size=y.shape)
    assert r2(y, y_hat) == pytest.approx(r2_score(y, y_hat, multioutput="variance_weighted"), abs=1e-12)
    assert r2(y, y_hat + 100) < 0  # worse than predicting the mean


def test_mse_hand_example():
    y = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert mse(y, torch.tensor([[1.0, 0.0], [3.0, 1.0]])) == pytest.approx((4 + 9) / 4)


def test_l0_counts_entries_above_threshold():
    codes = torch.tensor([[0.5, -0.2, 5e-5, 0.0], [0.0, 0.0, 0.0, 1e-3]])
    assert l0(codes) == pytest.approx(1.5)
    assert l0(codes, threshold=0.01) == pytest.approx(1.0)
    assert l0(codes, threshold=0.0) == pytest.approx(2.0)


def test_errors():
    y = torch.ones(4, 3)
    with pytest.raises(ValueError, match="zero variance"):
        r2(y, y)
    with pytest.raises(ValueError, match="columns"):
        mse(y, torch.ones(4, 2))
    with pytest.raises(ValueError, match="NaN"):
        mse(y, torch.full((4, 3), float("nan")))

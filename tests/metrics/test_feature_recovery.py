"""GT Recovery and MIP (seed 004 §5.1): invariances, the value for random directions, blocking, strict thresholds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.special import betainc

from dictlab.data import random_unit_dictionary
from dictlab.metrics import GT_RECOVERY_THRESHOLDS, abs_cosine_matrix, feature_recovery


def _truth(n: int = 40, m: int = 24, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return random_unit_dictionary(n, m, torch.Generator().manual_seed(seed), dtype)


def test_a_permuted_sign_flipped_rescaled_copy_with_extra_rows_recovers_everything() -> None:
    g = torch.Generator().manual_seed(1)
    true = _truth()
    n, m = true.shape
    perm = torch.randperm(n, generator=g)
    signs = torch.where(torch.rand(n, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
    scales = 0.1 + 5 * torch.rand(n, generator=g, dtype=torch.float64)
    copy = (true * (signs * scales)[:, None])[perm]
    learned = torch.cat([copy, torch.randn(30, m, generator=g, dtype=torch.float64), torch.zeros(2, m)])
    result = feature_recovery(learned, true)
    assert result.mip == pytest.approx(1.0, abs=1e-12)
    assert result.gt_recovery == {0.9: 1.0, 0.95: 1.0}
    # match[i] is the learned row holding true feature i: copy[j] = true[perm[j]]
    assert torch.equal(perm[result.match], torch.arange(n))
    assert result.best.dtype == torch.float64 and result.best.shape == (n,)


def _expected_max_abs_cosine(m: int, q: int) -> tuple[float, float]:
    """Mean and standard deviation of max_j |cos(u_j, t)| over q independent uniform directions u_j in R^m and a
    fixed t: cos² ~ Beta(1/2, (m−1)/2), so P(max ≤ x) = I_{x²}(1/2, (m−1)/2)^q, E = ∫₀¹ 1 − P(max ≤ x) dx and
    E[max²] = ∫₀¹ 2x(1 − P(max ≤ x)) dx (exact, by quadrature)."""

    def tail(x: float) -> float:
        return 1.0 - float(betainc(0.5, (m - 1) / 2, x * x)) ** q

    mean = quad(tail, 0.0, 1.0, limit=200)[0]
    second = quad(lambda x: 2 * x * tail(x), 0.0, 1.0, limit=200)[0]
    return mean, math.sqrt(second - mean**2)


def test_mip_of_random_directions_is_the_expected_maximum_absolute_cosine() -> None:
    # Gaussian rows have uniform directions, independent of the truth, so E[MIP] = E[s_i] exactly. The s_i of
    # different true features are nearly independent (200 seeds: sd of MIP 0.0029 vs σ/√n = 0.0028 at q = 400,
    # n = 300), so the tolerance is 5σ/√n = 0.0102. The usual mistakes miss it by far more: the signed max gives
    # 0.565, the max over true features per learned row (axes swapped) 0.529, against 0.590.
    m, q, n = 32, 2000, 400
    g = torch.Generator().manual_seed(0)
    learned = torch.randn(q, m, generator=g, dtype=torch.float64)
    result = feature_recovery(learned, torch.randn(n, m, generator=g, dtype=torch.float64))
    mean, sd = _expected_max_abs_cosine(m, q)
    assert mean == pytest.approx(0.5896, abs=1e-4)
    assert abs(result.mip - mean) < 5 * sd / math.sqrt(n)
    assert result.gt_recovery[0.9] == 0.0  # P(s_i > 0.9) ≈ q·P(|cos| > 0.9) < 1e-20


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("block_rows", [1, 7, 64, None])
def test_blocking_gives_the_dense_float64_result(dtype: torch.dtype, block_rows: int | None) -> None:
    g = torch.Generator().manual_seed(3)
    true = torch.randn(50, 20, generator=g, dtype=torch.float64)
    learned = torch.randn(130, 20, generator=g, dtype=torch.float64)
    learned[::9] = 0.0  # dead rows: cosine 0
    dense = abs_cosine_matrix(learned, true)  # (q, n) float64
    values, rows = dense.max(dim=0)
    result = feature_recovery(learned.to(dtype), true.to(dtype), block_rows=block_rows, thresholds=(0.3, 0.5))
    tol = 1e-13 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(result.best, values, atol=tol, rtol=0)
    # the winner is the dense argmax unless a runner-up is within rounding of it
    top2 = dense.topk(2, dim=0).values
    clear = (top2[0] - top2[1]) > 10 * tol
    assert torch.equal(result.match[clear], rows[clear])
    assert result.mip == pytest.approx(float(values.mean()), abs=tol)
    for tau in (0.3, 0.5):
        assert result.gt_recovery[tau] == float((values > tau).double().mean())  # no value within tol of τ


def test_inputs_are_taken_in_any_float_dtype_and_numpy() -> None:
    true = _truth(dtype=torch.float32)
    result = feature_recovery(true.numpy()[::-1].copy(), true)
    assert result.mip == pytest.approx(1.0, abs=1e-6) and result.gt_recovery[0.95] == 1.0
    assert torch.equal(result.match, torch.arange(true.shape[0] - 1, -1, -1))


def test_thresholds_are_strict() -> None:
    # cosines exactly 9/10 and 19/20 in floating point: ‖(9, 3, 3, 1)‖ = 10 and ‖(19, 6, 1, 1, 1)‖ = 20
    true = torch.eye(2, 6, dtype=torch.float64)
    learned = torch.tensor([[9.0, 0, 3, 3, 1, 0], [0, 19.0, 6, 1, 1, 1]], dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        result = feature_recovery(learned.to(dtype), true.to(dtype), thresholds=(0.9, 0.95, 0.9 - 1e-9, 0.0))
        assert result.best.tolist() == [0.9, 0.95]
        assert result.gt_recovery == {0.9: 0.5, 0.95: 0.0, 0.9 - 1e-9: 1.0, 0.0: 1.0}
    assert GT_RECOVERY_THRESHOLDS == (0.9, 0.95)


@pytest.mark.parametrize(
    ("learned", "true", "message"),
    [
        (torch.ones(3, 4), torch.ones(2, 5), "learned must have 5 columns"),
        (torch.ones(0, 4), torch.ones(2, 4), "at least one row, got 0 learned and 2 true"),
        (torch.ones(3, 4), torch.ones(0, 4), "at least one row, got 3 learned and 0 true"),
        (torch.ones(3), torch.ones(2, 3), "learned must be 2-D"),
        (torch.full((3, 4), math.nan), torch.ones(2, 4), "NaN or Inf"),
    ],
)
def test_bad_input_is_a_one_line_error(learned: torch.Tensor, true: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        feature_recovery(learned, true)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("kwargs", "message"), [({"thresholds": (1.5,)}, "thresholds"), ({"block_rows": 0}, "block")])
def test_bad_options_name_themselves(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        feature_recovery(torch.ones(3, 4), torch.ones(2, 4), **kwargs)


def test_several_true_features_may_share_one_learned_row() -> None:
    # Not a one-to-one matching: one learned row between two nearly parallel features serves both.
    true = torch.tensor([[1.0, 0.1, 0.0], [1.0, -0.1, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    learned = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -2.0]], dtype=torch.float64)
    result = feature_recovery(learned, true)
    assert result.match.tolist() == [0, 0, 1]
    expected = np.array([1 / math.sqrt(1.01), 1 / math.sqrt(1.01), 1.0])
    np.testing.assert_allclose(result.best.numpy(), expected, rtol=1e-15)
    assert result.mip == pytest.approx(expected.mean(), rel=1e-15)

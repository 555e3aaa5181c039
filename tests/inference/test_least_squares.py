"""Least squares on a support: per-sample lstsq reference, grouping, empty and oversized supports, clamping."""

from __future__ import annotations

import pytest
import torch

import dictlab.inference.least_squares as least_squares_module
from dictlab.inference import least_squares_on_support


@pytest.fixture(scope="module")
def problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    p, m, n = 40, 12, 60
    d = torch.randn(p, m, generator=g, dtype=torch.float64)
    y = torch.randn(n, m, generator=g, dtype=torch.float64)
    # Half the samples share one of three supports (exercises the grouping), the rest are random of size 0…m.
    shared = torch.rand(3, p, generator=g) < 0.2
    support = torch.rand(n, p, generator=g) < torch.rand(n, 1, generator=g) * m / p
    support[: n // 2] = shared[torch.arange(n // 2) % 3]
    support[-1] = False
    return y, d, support


def _reference(y: torch.Tensor, d: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    codes = torch.zeros(y.shape[0], d.shape[0], dtype=torch.float64)
    for i in range(y.shape[0]):
        s = support[i].nonzero().squeeze(1)
        if s.numel():
            codes[i, s] = torch.linalg.lstsq(d[s].T, y[i].unsqueeze(1), driver="gelsd").solution.squeeze(1)
    return codes


def test_equals_per_sample_lstsq(problem):
    y, d, support = problem
    assert int(support.sum(dim=1).max()) <= d.shape[1]
    expected = _reference(y, d, support)
    torch.testing.assert_close(least_squares_on_support(y, d, support, ridge=0.0), expected, atol=1e-10, rtol=0)


def test_ridge_matches_the_study_formula(problem):
    # STUDY-SPEC §3.6: z_S = y D_Sᵀ (D_S D_Sᵀ + ρ I)⁻¹, per sample
    y, d, support = problem
    ridge = 1e-3  # large enough to differ visibly from plain least squares
    expected = torch.zeros(y.shape[0], d.shape[0], dtype=torch.float64)
    for i in range(y.shape[0]):
        s = support[i].nonzero().squeeze(1)
        gram = d[s] @ d[s].T + ridge * torch.eye(s.numel(), dtype=torch.float64)
        expected[i, s] = torch.linalg.solve(gram, d[s] @ y[i])
    codes = least_squares_on_support(y, d, support, ridge=ridge)
    torch.testing.assert_close(codes, expected, atol=1e-10, rtol=0)
    assert float((codes - least_squares_on_support(y, d, support, ridge=0.0)).abs().max()) > 1e-6


def test_zero_outside_support_and_for_empty_support(problem):
    y, d, support = problem
    codes = least_squares_on_support(y, d, support)
    assert bool((codes[~support] == 0).all())
    assert bool((codes[-1] == 0).all())
    assert bool((least_squares_on_support(y, d, torch.zeros_like(support)) == 0).all())


def test_residual_is_orthogonal_to_the_support(problem):
    y, d, support = problem
    codes = least_squares_on_support(y, d, support, ridge=0.0)
    correlations = (y - codes @ d) @ d.T
    torch.testing.assert_close(correlations[support], torch.zeros_like(correlations[support]), atol=1e-10, rtol=0)


@pytest.mark.parametrize("ridge", [0.0, 1e-8])
def test_support_larger_than_dimension_gives_minimum_norm_solution(problem, ridge):
    y, d, _ = problem
    g = torch.Generator().manual_seed(1)
    support = torch.rand(y.shape[0], d.shape[0], generator=g) < 0.6  # ~24 atoms in 12 dimensions
    support[0] = False
    support[0, :5] = True  # one small support in the same call takes the Cholesky route
    codes = least_squares_on_support(y, d, support, ridge=ridge)
    for i in range(y.shape[0]):
        s = support[i].nonzero().squeeze(1)
        expected = y[i] @ torch.linalg.pinv(d[s])
        torch.testing.assert_close(codes[i, s], expected, atol=1e-6, rtol=0)
    assert bool((codes[~support] == 0).all())


def test_nonneg_clamps_the_unconstrained_solution(problem):
    y, d, support = problem
    signed = least_squares_on_support(y, d, support)
    clamped = least_squares_on_support(y, d, support, nonneg=True)
    assert bool((signed < 0).any())
    torch.testing.assert_close(clamped, signed.clamp_min(0), atol=0, rtol=0)


def test_chunking_does_not_change_the_result(problem, monkeypatch):
    y, d, support = problem
    whole = least_squares_on_support(y, d, support)
    monkeypatch.setattr(least_squares_module, "_MAX_GATHERED_ENTRIES", 100)
    torch.testing.assert_close(least_squares_on_support(y, d, support), whole, atol=1e-12, rtol=0)


def test_float32_follows_input(problem):
    y, d, support = problem
    codes = least_squares_on_support(y.float(), d.float(), support)
    assert codes.dtype == torch.float32
    expected = _reference(y.float().double(), d.float().double(), support)
    torch.testing.assert_close(codes.double(), expected, atol=1e-4, rtol=1e-4)


def test_bad_input_is_rejected(problem):
    y, d, support = problem
    with pytest.raises(ValueError, match="support must be a bool"):
        least_squares_on_support(y, d, support.double())
    with pytest.raises(ValueError, match=r"support must have shape \(60, 40\)"):
        least_squares_on_support(y, d, support[:, :-1])
    with pytest.raises(ValueError, match="ridge"):
        least_squares_on_support(y, d, support, ridge=-1.0)
    with pytest.raises(ValueError, match="dictionary must have 12 columns"):
        least_squares_on_support(y, d[:, :-1], support)

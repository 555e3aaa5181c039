"""The theoretical ℓ1 phase transition: ψ(ε) (statistical dimension of the ℓ1 descent cone per latent) and its
Donoho–Tanner form ρ(δ), checked against their defining properties, an independent closed form and asymptotics."""

from __future__ import annotations

import math

import pytest
import torch

from dictlab.theory import (
    gaussian_excess_second_moment,
    l1_critical_sparsity,
    l1_phase_curve,
    l1_statistical_dimension,
    optimal_threshold,
)

BOTH = pytest.mark.parametrize("nonneg", [False, True], ids=["signed", "nonneg"])
EPS = torch.linspace(0.0, 1.0, 201, dtype=torch.float64)
DELTAS = torch.linspace(0.0, 1.0, 201, dtype=torch.float64)


def factor(nonneg: bool) -> float:
    return 1.0 if nonneg else 2.0


def test_gaussian_excess_second_moment_matches_quadrature():
    u = torch.linspace(-12.0, 12.0, 400_001, dtype=torch.float64)
    density = torch.exp(-u * u / 2) / math.sqrt(2 * math.pi)
    for tau in (0.0, 0.5, 1.3, 3.0):
        numeric = torch.trapezoid((u - tau).clamp_min(0) ** 2 * density, u)
        assert float(gaussian_excess_second_moment(torch.tensor(tau, dtype=torch.float64))) == pytest.approx(
            float(numeric), abs=1e-9
        )


@BOTH
def test_psi_endpoints_bounds_monotone_and_concave(nonneg):
    psi = l1_statistical_dimension(EPS, nonneg=nonneg)
    assert float(psi[0]) == 0.0
    assert float(psi[-1]) == pytest.approx(1.0, abs=1e-12)
    assert bool((psi >= EPS - 1e-12).all()) and bool((psi <= 1.0 + 1e-12).all())  # ε ≤ ψ(ε) ≤ 1
    assert bool((psi.diff() > 0).all())
    assert bool((psi.diff().diff() <= 1e-12).all())  # an infimum of affine functions of ε: concave


@BOTH
def test_psi_is_the_infimum_over_tau(nonneg):
    """ψ(ε) is the minimum of the bracket over a fine τ grid (to the grid's resolution), attained at the optimal τ."""
    tau = torch.linspace(0.0, 8.0, 80_001, dtype=torch.float64)
    for eps in (0.01, 0.1, 0.3, 0.7):
        bracket = eps * (1 + tau**2) + factor(nonneg) * (1 - eps) * gaussian_excess_second_moment(tau)
        psi = float(l1_statistical_dimension(eps, nonneg=nonneg))
        assert float(bracket.min()) - 1e-8 <= psi <= float(bracket.min()) + 1e-12  # grid step 1e-4 in τ
        assert float(tau[bracket.argmin()]) == pytest.approx(float(optimal_threshold(eps, nonneg=nonneg)), abs=1e-3)


@BOTH
def test_psi_vanishes_like_two_eps_log_one_over_eps(nonneg):
    """ψ(ε) → 0 as ε → 0, with ψ(ε) ~ 2ε ln(1/ε) (Amelunxen et al. 2014); the ratio climbs slowly towards 1."""
    eps = torch.tensor([1e-4, 1e-6, 1e-8, 1e-10], dtype=torch.float64)
    ratio = l1_statistical_dimension(eps, nonneg=nonneg) / (2 * eps * torch.log(1 / eps))
    assert float(l1_statistical_dimension(1e-6, nonneg=nonneg)) < 1e-4
    assert bool((ratio.diff() > 0).all()) and bool((ratio < 1).all()) and float(ratio[-1]) > 0.75


@BOTH
def test_curve_inverts_psi(nonneg):
    eps = l1_critical_sparsity(DELTAS, nonneg=nonneg)
    torch.testing.assert_close(l1_statistical_dimension(eps, nonneg=nonneg), DELTAS, rtol=0, atol=1e-12)
    rho = l1_phase_curve(DELTAS, nonneg=nonneg)
    torch.testing.assert_close(rho[1:] * DELTAS[1:], eps[1:], rtol=0, atol=1e-15)


@BOTH
def test_curve_endpoints_and_monotone(nonneg):
    rho = l1_phase_curve(DELTAS, nonneg=nonneg)
    assert float(rho[0]) == 0.0 and float(rho[-1]) == 1.0
    assert bool((rho.diff() > 0).all())
    assert bool((rho[1:] > 0).all())


def test_simplex_curve_lies_above_the_cross_polytope_curve():
    inner = DELTAS[1:-1]
    assert bool((l1_phase_curve(inner, nonneg=True) > l1_phase_curve(inner, nonneg=False)).all())


@BOTH
def test_curve_matches_the_minimax_closed_form(nonneg):
    """Donoho, Maleki & Montanari (2009) / Su, Bogdan & Candès's ``epsilonDT``: ρ(δ) = max_τ [1 − (c/δ)A(τ)] /
    [1 + τ² − cA(τ)], A(τ) = E(Z − τ)₊² — a different optimisation (over τ at fixed δ) giving the same curve."""
    tau = torch.linspace(0.0, 8.0, 160_001, dtype=torch.float64)
    a = factor(nonneg) * gaussian_excess_second_moment(tau)
    for delta in (0.05, 0.2, 0.5, 0.8, 0.95):
        closed = float(((1 - a / delta) / (1 + tau**2 - a)).max())
        assert float(l1_phase_curve(delta, nonneg=nonneg)) == pytest.approx(closed, abs=1e-8)


@BOTH
def test_small_delta_asymptotics(nonneg):
    """ρ(δ) ~ 1/(2 ln(1/δ)) as δ → 0: Donoho & Tanner's "n ≳ 2k log(N/n)" (Precise Undersampling Theorems, 2010)."""
    delta = torch.tensor([1e-6, 1e-10, 1e-14], dtype=torch.float64)
    ratio = l1_phase_curve(delta, nonneg=nonneg) * 2 * torch.log(1 / delta)
    assert bool((ratio > 0.95).all()) and bool((ratio < 1.15).all())


def test_values_at_half():
    """Values as computed here (agreeing with the closed form above and with the FISTA diagram of
    ``test_phase_diagram``). Non-negative: ρ(½) ≈ 0.558, Donoho & Tanner's simplex weak threshold. Signed:
    ρ(½) ≈ 0.386; ρ ≈ 0.19 is the signed curve at δ = 0.1, not at ½. Not checked against a published table."""
    assert float(l1_phase_curve(0.5, nonneg=True)) == pytest.approx(0.5582, abs=5e-4)
    assert float(l1_phase_curve(0.5, nonneg=False)) == pytest.approx(0.3857, abs=5e-4)
    assert float(l1_phase_curve(0.1, nonneg=False)) == pytest.approx(0.1894, abs=5e-4)
    # the statistical dimension at a 10 %-sparse point: ~33 % of the ambient dimension (signed)
    assert float(l1_statistical_dimension(0.1, nonneg=False)) == pytest.approx(0.3288, abs=5e-4)


def test_shapes_and_errors():
    grid = torch.rand(3, 4, dtype=torch.float64)
    assert l1_phase_curve(grid, nonneg=True).shape == (3, 4)
    assert l1_phase_curve([0.2, 0.4], nonneg=False).dtype == torch.float64
    with pytest.raises(ValueError, match=r"delta must lie in \[0, 1\], got 1.5"):
        l1_phase_curve([0.5, 1.5], nonneg=True)
    with pytest.raises(ValueError, match="epsilon must lie in"):
        l1_statistical_dimension(float("nan"), nonneg=True)

"""The theoretical weak phase transition of ℓ1 minimisation, from the statistical dimension of its descent cone.

For a k-sparse code z ∈ R^p and m Gaussian measurements y = z D (D (p, m) i.i.d. Gaussian; the papers' y = A z
has A = D.T), basis pursuit min ‖x‖₁ s.t. x D = y recovers z with high probability when m exceeds the
statistical dimension of the ℓ1 descent cone at z, and fails when m is below it (Amelunxen, Lotz, McCoy &
Tropp 2014, "Living on the edge", Prop. 4.5). Per latent, for the sparsity fraction ε = k/p,

    ψ(ε) = inf_{τ≥0}  ε(1 + τ²) + (1 − ε) · c · ∫_τ^∞ (u − τ)² φ(u) du,
    ∫_τ^∞ (u − τ)² φ(u) du = (1 + τ²)Q(τ) − τφ(τ)

with φ, Q the standard normal density and upper tail, c = 2 for signed codes (the cross-polytope) and c = 1
for non-negative codes under a non-negativity constraint (the simplex). The critical measurement ratio is
δ = m/p = ψ(ε). ψ is also the minimax MSE of soft thresholding (Donoho, Johnstone & Montanari 2013) and
coincides asymptotically with Donoho & Tanner's weak threshold (2009). In Donoho–Tanner coordinates
(δ = m/p, ρ = k/m) the curve is ρ(δ) = ψ⁻¹(δ)/δ.

Computation (float64, torch): the bracket is convex in τ (its second derivative is 2ε + 2c(1 − ε)Q(τ) > 0),
so its minimiser solves ετ = c(1 − ε)(φ(τ) − τQ(τ)), found by bisection. ψ is increasing and concave in ε
(an infimum of non-decreasing affine functions), and that relation gives ε as a decreasing function of its
optimal τ, so ψ(ε) = δ is inverted by one bisection on τ. Donoho, Maleki & Montanari's closed form
ρ(δ) = max_τ [1 − (c/δ)E(Z − τ)₊²] / [1 + τ² − cE(Z − τ)₊²] is the same curve (the tests check it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

# Bisection steps: each halves the bracket, so 64 reach float64 resolution from [0, 40] and from [0, 1].
_BISECTION_STEPS = 64
# Upper end of the τ bracket: the minimiser is about sqrt(2 ln(1/ε)) < 40 for every positive float64 ε.
_TAU_MAX = 40.0

ArrayInput = float | Sequence[float] | np.ndarray | torch.Tensor


def _as_float64(name: str, values: ArrayInput, low: float, high: float) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(values, dtype=np.float64)) if not isinstance(values, torch.Tensor) else values
    x = x.detach().to(device="cpu", dtype=torch.float64)
    if x.numel() and (not bool(torch.isfinite(x).all()) or float(x.min()) < low or float(x.max()) > high):
        bad = x[~torch.isfinite(x) | (x < low) | (x > high)][0]
        raise ValueError(f"{name} must lie in [{low:g}, {high:g}], got {float(bad)!r}")
    return x


def _normal_pdf(t: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)


def _normal_tail(t: torch.Tensor) -> torch.Tensor:
    """Q(t) = P(Z > t) = erfc(t/√2)/2, accurate in the far tail."""
    return 0.5 * torch.special.erfc(t / math.sqrt(2.0))


def gaussian_excess_second_moment(tau: torch.Tensor) -> torch.Tensor:
    """E[(Z − τ)₊²] = ∫_τ^∞ (u − τ)² φ(u) du = (1 + τ²)Q(τ) − τφ(τ) for Z ~ N(0, 1)."""
    return (1.0 + tau * tau) * _normal_tail(tau) - tau * _normal_pdf(tau)


def _factor(nonneg: bool) -> float:
    return 1.0 if nonneg else 2.0


def optimal_threshold(epsilon: ArrayInput, *, nonneg: bool) -> torch.Tensor:
    """The minimising τ of ψ(ε) (the minimax soft threshold), float64; +inf at ε = 0, 0 at ε = 1."""
    eps = _as_float64("epsilon", epsilon, 0.0, 1.0)
    c = _factor(nonneg)
    low = torch.zeros_like(eps)
    high = torch.full_like(eps, _TAU_MAX)
    for _ in range(_BISECTION_STEPS):
        tau = 0.5 * (low + high)
        # half the derivative of the bracket: ετ − c(1 − ε)·E[(Z − τ)₊]
        slope = eps * tau - c * (1.0 - eps) * (_normal_pdf(tau) - tau * _normal_tail(tau))
        rising = slope > 0
        high = torch.where(rising, tau, high)
        low = torch.where(rising, low, tau)
    tau = 0.5 * (low + high)
    tau = torch.where(eps >= 1.0, torch.zeros_like(tau), tau)
    return torch.where(eps <= 0.0, torch.full_like(tau, math.inf), tau)


def l1_statistical_dimension(epsilon: ArrayInput, *, nonneg: bool) -> torch.Tensor:
    """ψ(ε): the statistical dimension of the ℓ1 descent cone at an εp-sparse point, divided by p (module
    docstring). ε ∈ [0, 1]; ψ(0) = 0, ψ(1) = 1, ε ≤ ψ(ε) ≤ 1. float64 tensor of the shape of ``epsilon``."""
    eps = _as_float64("epsilon", epsilon, 0.0, 1.0)
    tau = optimal_threshold(eps, nonneg=nonneg)
    finite = torch.where(torch.isfinite(tau), tau, torch.zeros_like(tau))
    psi = eps * (1.0 + finite * finite) + _factor(nonneg) * (1.0 - eps) * gaussian_excess_second_moment(finite)
    return torch.where(eps <= 0.0, torch.zeros_like(psi), psi)


def _sparsity_at_threshold(tau: torch.Tensor, c: float) -> torch.Tensor:
    """The ε whose optimal threshold is τ: from ετ = c(1 − ε)E[(Z − τ)₊], ε = cE/(τ + cE); decreasing in τ."""
    excess = c * (_normal_pdf(tau) - tau * _normal_tail(tau))
    return excess / (tau + excess)


def l1_critical_sparsity(delta: ArrayInput, *, nonneg: bool) -> torch.Tensor:
    """ε*(δ) = ψ⁻¹(δ): the largest sparsity fraction k/p that ℓ1 recovers from δ = m/p measurements per latent.

    Solved along the curve's parametrisation by the optimal threshold τ: ε(τ) = cE[(Z − τ)₊]/(τ + cE[(Z − τ)₊])
    decreases in τ and ψ increases in ε, so δ(τ) = ψ(ε(τ)) decreases in τ and one bisection on τ finds δ(τ) = δ.
    """
    d = _as_float64("delta", delta, 0.0, 1.0)
    c = _factor(nonneg)
    low = torch.zeros_like(d)
    high = torch.full_like(d, _TAU_MAX)
    for _ in range(_BISECTION_STEPS):
        tau = 0.5 * (low + high)
        eps = _sparsity_at_threshold(tau, c)
        psi = eps * (1.0 + tau * tau) + c * (1.0 - eps) * gaussian_excess_second_moment(tau)
        too_many = psi > d  # measurements needed at this τ exceed δ: move to sparser codes (larger τ)
        low = torch.where(too_many, tau, low)
        high = torch.where(too_many, high, tau)
    eps = _sparsity_at_threshold(0.5 * (low + high), c)
    eps = torch.where(d <= 0.0, torch.zeros_like(d), eps)
    return torch.where(d >= 1.0, torch.ones_like(d), eps)


def l1_phase_curve(delta: ArrayInput, *, nonneg: bool) -> torch.Tensor:
    """ρ(δ) = ψ⁻¹(δ)/δ: the weak ℓ1 phase transition in Donoho–Tanner coordinates (δ = m/p, ρ = k/m).

    Below the curve (ρ < ρ(δ)) ℓ1 minimisation recovers a random k-sparse code with probability → 1 as p → ∞,
    above it with probability → 0. ``nonneg``: non-negative codes with a non-negativity constraint (the simplex
    curve, higher); else signed codes (the cross-polytope). δ ∈ [0, 1]; ρ(0) = 0 (its limit), ρ(1) = 1.
    Returns a float64 tensor of the shape of ``delta``. Known values: ρ(0.5) ≈ 0.193 signed, ≈ 0.558 non-negative.
    """
    d = _as_float64("delta", delta, 0.0, 1.0)
    eps = l1_critical_sparsity(d, nonneg=nonneg)
    return torch.where(d > 0, eps / torch.where(d > 0, d, torch.ones_like(d)), torch.zeros_like(d))

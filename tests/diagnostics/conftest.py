"""Shared constructions: exact non-negative Lasso codes, a dictionary learned to a stationary point, and
hierarchical data (a parent is active exactly when one of its children is: Def. 3.9 of seed 004)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from dictlab.inference import fista

LAM = 0.1


def exact_nonneg_lasso(y: torch.Tensor, d: torch.Tensor, lam: float, z0: torch.Tensor | None = None) -> torch.Tensor:
    """argmin_{z ≥ 0} ½‖y − zD‖² + λ‖z‖₁ to machine precision (float64): FISTA finds the supports, then the
    optimality equations on each support, D_S D_Sᵀ z_S = D_S y − λ1, are solved exactly (one batched solve)
    and the complete conditions — z_S > 0, c ≤ λ off the support — are asserted."""
    z = fista(y, d, lam, nonneg=True, max_iter=500, z0=z0).codes
    mask = (z > 0).to(y.dtype)
    gram = d @ d.T
    system = mask[:, :, None] * gram * mask[:, None, :] + torch.diag_embed(1.0 - mask)
    exact = torch.linalg.solve(system, mask * (y @ d.T - lam))
    c = (y - exact @ d) @ d.T
    assert bool((exact[mask > 0] > 0).all()), "a support entry left the positive orthant"
    inactive = c[mask == 0]
    assert inactive.numel() == 0 or float(inactive.max()) <= lam + 1e-12, "an inactive atom violates c <= lam"
    assert float((c[mask > 0] - lam).abs().max()) <= 1e-10
    return exact


@dataclass(frozen=True)
class Optimum:
    y: torch.Tensor  # (N, m)
    dictionary: torch.Tensor  # (p, m), unit rows
    codes: torch.Tensor  # (N, p), exact Lasso codes for dictionary
    lam: float


def _learn_to_stationarity(rounds: int = 60) -> Optimum:
    """A float64 alternating solver run to a joint stationary point of ½‖Y − ZD‖² + λ‖Z‖₁, Z ≥ 0, ‖d_j‖ = 1.

    Each round: (1) exact Lasso codes for the current D; (2) every atom in turn set to its exact minimiser on
    the sphere with the codes fixed: with R_j = Y − Σ_{k≠j} z_k d_kᵀ the residual without atom j,
    ½‖R_j − z_j d_jᵀ‖² = const − ⟨R_jᵀ z_j, d_j⟩ + ½‖z_j‖² on ‖d_j‖ = 1, minimised by d_j = R_jᵀ z_j / ‖R_jᵀ z_j‖.
    Both steps minimise the objective over their block, so it decreases monotonically; at a fixed point
    d_j ∥ R_jᵀ z_j = g_j + ‖z_j‖² d_j, i.e. g_j ∥ d_j — the stationarity condition. The returned codes are
    re-solved exactly for the final D, so they are optimal for that D (the KKT conditions hold to ~1e-12),
    and the condition on the atoms holds to the fixed-point error of the last round (the residual falls
    ~0.6× per round here: ~1e-12 after 60 rounds).
    """
    gen = torch.Generator().manual_seed(0)
    p, m, n = 6, 10, 300
    true = torch.randn(p, m, generator=gen, dtype=torch.float64)
    true /= true.norm(dim=1, keepdim=True)
    z_true = (torch.rand(n, p, generator=gen, dtype=torch.float64) < 0.3) * (
        0.5 + torch.rand(n, p, generator=gen, dtype=torch.float64)
    )
    y = z_true @ true + 0.05 * torch.randn(n, m, generator=gen, dtype=torch.float64)
    d = true + 0.1 * torch.randn(p, m, generator=gen, dtype=torch.float64)
    d /= d.norm(dim=1, keepdim=True)
    z = None
    for _ in range(rounds):
        z = exact_nonneg_lasso(y, d, LAM, z)
        for j in range(p):
            pull_j = (y - z @ d + z[:, j : j + 1] * d[j]).T @ z[:, j]
            d[j] = pull_j / pull_j.norm()
    z = exact_nonneg_lasso(y, d, LAM, z)
    return Optimum(y, d, z, LAM)


@pytest.fixture(scope="session")
def optimum() -> Optimum:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _learn_to_stationarity()
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Hierarchical:
    y: torch.Tensor  # (N, m) = z D, exactly
    dictionary: torch.Tensor  # (p, m) unit atoms: parents, then their children, then independent roots
    codes: torch.Tensor  # (N, p) true codes, dense
    parent: torch.Tensor  # (p,) int64, -1 for roots
    parents: list[int]
    children: dict[int, list[int]]


def make_hierarchical(
    n: int = 400,
    n_parents: int = 3,
    n_children: int = 3,
    n_roots: int = 3,
    m: int = 40,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Hierarchical:
    """Each parent is on for a sample with probability 0.3, and then exactly one of its children, chosen
    uniformly, is on with it (parent active ⇔ some child active); each independent root is on with
    probability 0.2. Magnitudes U(0.5, 1.5); atoms random unit vectors."""
    gen = torch.Generator().manual_seed(seed)
    p = n_parents * (1 + n_children) + n_roots
    d = torch.randn(p, m, generator=gen, dtype=dtype)
    d /= d.norm(dim=1, keepdim=True)
    parent = torch.full((p,), -1, dtype=torch.int64)
    children: dict[int, list[int]] = {}
    for i in range(n_parents):
        kids = [n_parents + i * n_children + c for c in range(n_children)]
        parent[kids] = i
        children[i] = kids
    z = torch.zeros(n, p, dtype=dtype)
    for i, kids in children.items():
        on = torch.rand(n, generator=gen) < 0.3
        pick = torch.randint(0, n_children, (n,), generator=gen)
        for c, kid in enumerate(kids):
            rows = on & (pick == c)
            z[rows, kid] = 0.5 + torch.rand(int(rows.sum()), generator=gen, dtype=dtype)
        z[on, i] = 0.5 + torch.rand(int(on.sum()), generator=gen, dtype=dtype)
    roots = list(range(p - n_roots, p))
    for r in roots:
        on = torch.rand(n, generator=gen) < 0.2
        z[on, r] = 0.5 + torch.rand(int(on.sum()), generator=gen, dtype=dtype)
    return Hierarchical(z @ d, d, z, parent, list(children), children)


@pytest.fixture(scope="session")
def hierarchical() -> Hierarchical:
    return make_hierarchical()

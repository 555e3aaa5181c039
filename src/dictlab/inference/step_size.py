"""Lipschitz constant of the least-squares gradient: L = ‖D‖₂² (largest singular value squared)."""

from __future__ import annotations

import torch


def lipschitz_constant(dictionary: torch.Tensor, *, max_iter: int = 500, rtol: float = 1e-7, seed: int = 0) -> float:
    """Estimate ``‖D‖₂²`` for a (p, m) dictionary by power iteration on the smaller Gram matrix.

    The gradient of ½‖y − zD‖² is (zD − y)Dᵀ, Lipschitz with constant λ_max(D Dᵀ) = λ_max(DᵀD).
    Power iteration approaches λ_max from below, so the estimate is inflated by ``1 + 1e-4``
    (a step a hair too small costs nothing; too large can diverge). Returns at least 1e-12.
    """
    d = dictionary.double()
    gram = d.T @ d if d.shape[1] <= d.shape[0] else d @ d.T
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(gram.shape[0], 1, generator=generator, dtype=torch.float64).to(gram.device)
    estimate = 0.0
    for _ in range(max_iter):
        w = gram @ v
        norm = w.norm().item()
        if norm == 0.0:
            return 1e-12
        v = w / norm
        converged = abs(norm - estimate) <= rtol * norm
        estimate = norm
        if converged:
            break
    return max(estimate * (1 + 1e-4), 1e-12)

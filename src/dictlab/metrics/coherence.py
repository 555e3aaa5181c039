"""Coherence of a dictionary D (p, m), atoms as rows, all measured on unit-normalised atoms.

mutual coherence μ = max_{i≠j} |⟨d_i, d_j⟩| / (‖d_i‖‖d_j‖) (Donoho & Huo 2001);
Babel function μ₁(s) = max_i max_{|Λ|=s, i∉Λ} Σ_{j∈Λ} |⟨d_i, d_j⟩| (Tropp 2004, "Greed is good"), whose
inner maximum is the sum of the s largest off-diagonal |G_ij| of row i. μ₁(1) = μ. In Tropp's column
form the atoms are the columns of Φ = D.T. Zero atoms (norm < 1e-8) have cosine 0 with every atom.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from dictlab.metrics.inputs import ArrayLike, as_matrix
from dictlab.validation import check_int_range

NORM_FLOOR = 1e-8
# Gram rows formed per block: bounds the transient (block, p) matrix to ~16M entries at any p.
_BLOCK_ENTRIES = 1 << 24


def _unit_atoms(dictionary: ArrayLike) -> torch.Tensor:
    d = as_matrix("dictionary", dictionary)
    if d.shape[0] < 2:
        raise ValueError(f"coherence needs at least 2 atoms (rows), got dictionary of shape {tuple(d.shape)}")
    return d / torch.linalg.vector_norm(d, dim=1, keepdim=True).clamp_min(NORM_FLOOR)


def _offdiagonal_abs_gram(unit: torch.Tensor) -> Iterator[torch.Tensor]:
    """Blocks of rows of |G| = |D̂D̂ᵀ| with the diagonal set to −1 (below every |cosine|)."""
    p = unit.shape[0]
    block = max(1, _BLOCK_ENTRIES // p)
    for start in range(0, p, block):
        rows = (unit[start : start + block] @ unit.T).abs_()
        idx = torch.arange(rows.shape[0], device=unit.device)
        rows[idx, idx + start] = -1.0
        yield rows


def mutual_coherence(dictionary: ArrayLike) -> float:
    """μ(D) for D (p, m), p ≥ 2; 0 for orthogonal atoms, 1 when two atoms are parallel."""
    unit = _unit_atoms(dictionary)
    return float(max(float(rows.amax()) for rows in _offdiagonal_abs_gram(unit)))


def babel(dictionary: ArrayLike, s_max: int) -> torch.Tensor:
    """(s_max,) Babel curve μ₁(1), …, μ₁(s_max) of D (p, m), 1 ≤ s_max ≤ p − 1, in the dictionary's dtype."""
    unit = _unit_atoms(dictionary)
    check_int_range("s_max", s_max, 1, unit.shape[0] - 1)
    curve = torch.zeros(s_max, dtype=unit.dtype, device=unit.device)
    for rows in _offdiagonal_abs_gram(unit):
        top = rows.topk(s_max, dim=1, sorted=True).values.cumsum(dim=1)
        curve = torch.maximum(curve, top.amax(dim=0))
    return curve

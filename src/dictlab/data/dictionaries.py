"""Random dictionaries, the starting point of generators and learners alike."""

from __future__ import annotations

import torch


def random_unit_dictionary(
    num_atoms: int, dim: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """A (num_atoms, dim) dictionary with i.i.d. N(0,1) entries and unit-norm rows (atoms)."""
    atoms = torch.randn(num_atoms, dim, generator=generator, dtype=torch.float64)
    return (atoms / atoms.norm(dim=1, keepdim=True).clamp_min(1e-12)).to(dtype)

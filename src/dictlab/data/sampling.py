"""Vectorised sampling of distinct latent indices."""

from __future__ import annotations

import torch


def sample_distinct(
    num_rows: int, count: int, pool_size: int, generator: torch.Generator, *, offset: int = 0
) -> torch.Tensor:
    """Draw ``count`` distinct integers from ``offset + range(pool_size)`` for each of ``num_rows`` rows.

    Robert Floyd's algorithm (Bentley & Floyd, CACM 1987), vectorised over rows: every subset is
    equally likely, ``count`` random draws per row, memory (num_rows, count) — never (num_rows, pool_size).

    Returns (num_rows, count) int64.
    """
    if count > pool_size:
        raise ValueError(f"cannot draw {count} distinct latents from a pool of {pool_size}")
    chosen = torch.empty(num_rows, count, dtype=torch.int64)
    for i, j in enumerate(range(pool_size - count, pool_size)):
        candidate = torch.randint(0, j + 1, (num_rows,), generator=generator)
        taken = (chosen[:, :i] == candidate[:, None]).any(dim=1)
        chosen[:, i] = torch.where(taken, j, candidate)
    return chosen + offset

"""Exactly-k-sparse codes stored as (indices, values) pairs: memory N·k, not N·p."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SparseCodes:
    """Codes with exactly ``k`` stored entries per sample.

    Attributes
    ----------
    indices : (N, k) int64 — the active latents of each sample (distinct within a row).
    values : (N, k) float — their magnitudes.
    num_latents : p, the width of the dense code.
    """

    indices: torch.Tensor
    values: torch.Tensor
    num_latents: int

    def __post_init__(self) -> None:
        if self.indices.shape != self.values.shape or self.indices.ndim != 2:
            raise ValueError(
                f"indices and values must both be (N, k); got {tuple(self.indices.shape)} "
                f"and {tuple(self.values.shape)}"
            )

    def __len__(self) -> int:
        return self.indices.shape[0]

    @property
    def k(self) -> int:
        return self.indices.shape[1]

    def to_dense(self) -> torch.Tensor:
        """The (N, p) dense code matrix."""
        dense = torch.zeros(len(self), self.num_latents, dtype=self.values.dtype, device=self.values.device)
        return dense.scatter_(1, self.indices, self.values)

    def decode(self, dictionary: torch.Tensor) -> torch.Tensor:
        """Y = Z @ D for a (p, m) dictionary, without forming Z: (N, m)."""
        return torch.nn.functional.embedding_bag(
            self.indices, dictionary, per_sample_weights=self.values.to(dictionary.dtype), mode="sum"
        )

    def latent(self, j: int) -> torch.Tensor:
        """The (N,) column ``z_j`` (zero where latent j is inactive)."""
        return (self.values * (self.indices == j)).sum(dim=1)

    def active_latents(self) -> torch.Tensor:
        """Sorted latents with a non-zero value in at least one sample."""
        return torch.unique(self.indices[self.values != 0])

    def __getitem__(self, rows: slice | torch.Tensor) -> SparseCodes:
        return SparseCodes(self.indices[rows], self.values[rows], self.num_latents)

    def to(self, device: torch.device | str) -> SparseCodes:
        return SparseCodes(self.indices.to(device), self.values.to(device), self.num_latents)


def observe(codes: SparseCodes, dictionary: torch.Tensor, noise_std: float, generator: torch.Generator) -> torch.Tensor:
    """Observations Y = Z D (N, m) of codes Z and a dictionary D (p, m), plus N(0, noise_std²) noise from
    ``generator`` when noise_std > 0 (what every generator observes)."""
    y = codes.decode(dictionary)
    if noise_std > 0:
        y = y + noise_std * torch.randn(y.shape, generator=generator, dtype=y.dtype)
    return y

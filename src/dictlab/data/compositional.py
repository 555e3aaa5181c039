"""The compositional ID/OOD generator of "Stop Probing, Start Coding" (arXiv 2603.28744).

Observations ``y = A z`` with an unknown mixing matrix and exactly-k-sparse non-negative codes. In
dictlab's atoms-as-rows convention the ground-truth dictionary is ``D = A.T`` of shape (p, m) and
``Y = Z @ D``.

Latent 0 carries the label (``z0 > 0.5``). The last ``num_ood`` latents form the OOD pool, latents
``1 … p - num_ood - 1`` the ID pool. Supports are drawn as

* setting A: latent 0 plus k-1 latents from the ID pool;
* setting B: k latents from ``1 … p-1`` (both pools, latent 0 inactive);
* setting C (OOD only): latent 0 plus k-1 latents from the OOD pool.

ID samples are A or B with probability 1/2 each, so latent 0 never meets an OOD-pool latent in ID
data; the OOD split presents it in exactly those unseen combinations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pydantic import Field, model_validator

from dictlab.config import Config
from dictlab.data.sampling import sample_distinct
from dictlab.data.sparse_codes import SparseCodes


def input_dim_from_cs_bound(num_latents: int, k: int, c: float = 2.0) -> int:
    """Observation dimension ``m = max(k + 1, ceil(c · k · ln(p / k)))`` (compressed-sensing bound).

    Raises ValueError where the bound cannot hold: ``k >= p`` or ``m > p``.
    """
    if k < 1 or num_latents < 1:
        raise ValueError(f"k and num_latents must be >= 1, got k={k}, num_latents={num_latents}")
    if k >= num_latents:
        raise ValueError(f"k={k} must be smaller than num_latents={num_latents} for a compressed-sensing bound")
    m = max(k + 1, math.ceil(c * k * math.log(num_latents / k)))
    if m > num_latents:
        raise ValueError(
            f"the compressed-sensing bound gives input_dim={m} > num_latents={num_latents} "
            f"(k={k}, c={c}); there is no superposition to study — lower k or raise num_latents"
        )
    return m


class CompositionalConfig(Config):
    """Parameters of the compositional generator. Defaults are the study's (n=100, k=10, N=5000)."""

    num_latents: int = Field(100, ge=2, description="p: number of ground-truth latents (dictionary atoms).")
    k: int = Field(10, ge=1, description="Active latents per sample (exactly k).")
    n_samples: int = Field(5000, ge=4, description="ID samples, split into train and validation halves.")
    input_dim: int | None = Field(None, ge=1, description="m; None: the compressed-sensing bound ceil(2k ln(p/k)).")
    num_ood: int | None = Field(None, ge=1, description="Size of the OOD pool (the last latents); None: p // 2.")
    magnitude_power: float = Field(1.0, gt=0, description="Active magnitudes are U(0,1) ** power.")
    label_threshold: float = Field(0.5, description="label = z0 > threshold.")
    noise_std: float = Field(0.0, ge=0, description="Std of additive Gaussian observation noise (0: y = A z exactly).")

    @model_validator(mode="after")
    def _check_pools(self) -> CompositionalConfig:
        p, k = self.num_latents, self.k
        if k >= p:
            raise ValueError(f"k={k} must be smaller than num_latents={p}")
        m = self.resolved_input_dim
        if m > p:
            raise ValueError(f"input_dim={m} must be <= num_latents={p} (superposition: m <= p)")
        if m < k:
            raise ValueError(f"input_dim={m} must be >= k={k}: fewer observations than active latents")
        num_ood = self.resolved_num_ood
        id_pool = p - num_ood - 1
        if num_ood >= p - 1:
            raise ValueError(f"num_ood={num_ood} must be < num_latents - 1 = {p - 1} to leave an ID pool")
        if k - 1 > id_pool:
            raise ValueError(f"setting A needs k-1={k - 1} latents from the ID pool of size {id_pool}; lower k")
        if k - 1 > num_ood:
            raise ValueError(f"setting C needs k-1={k - 1} latents from the OOD pool of size {num_ood}; lower k")
        return self

    @property
    def resolved_input_dim(self) -> int:
        return self.input_dim if self.input_dim is not None else input_dim_from_cs_bound(self.num_latents, self.k)

    @property
    def resolved_num_ood(self) -> int:
        return self.num_ood if self.num_ood is not None else self.num_latents // 2


@dataclass(frozen=True)
class Split:
    """One split of a dataset: observations (N, m), ground-truth codes (N, k sparse), labels (N,) bool."""

    y: torch.Tensor
    codes: SparseCodes
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.y.shape[0]

    def to(self, device: torch.device | str) -> Split:
        return Split(self.y.to(device), self.codes.to(device), self.labels.to(device))


@dataclass(frozen=True)
class CompositionalDataset:
    """Ground-truth dictionary (p, m), atoms as rows (``A = dictionary.T``), and the three splits."""

    config: CompositionalConfig
    seed: int
    dictionary: torch.Tensor
    train: Split
    val: Split
    ood: Split

    @property
    def num_latents(self) -> int:
        return self.dictionary.shape[0]

    @property
    def input_dim(self) -> int:
        return self.dictionary.shape[1]

    @property
    def k(self) -> int:
        return self.config.k

    def to(self, device: torch.device | str) -> CompositionalDataset:
        return CompositionalDataset(
            self.config, self.seed, self.dictionary.to(device), self.train.to(device), self.val.to(device), self.ood.to(device)
        )


def random_unit_dictionary(
    num_atoms: int, dim: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """A (num_atoms, dim) dictionary with i.i.d. N(0,1) entries and unit-norm rows (atoms)."""
    atoms = torch.randn(num_atoms, dim, generator=generator, dtype=torch.float64)
    return (atoms / atoms.norm(dim=1, keepdim=True).clamp_min(1e-12)).to(dtype)


def _sample_codes(
    num_rows: int, config: CompositionalConfig, ood: bool, generator: torch.Generator, dtype: torch.dtype
) -> SparseCodes:
    p, k = config.num_latents, config.k
    num_ood = config.resolved_num_ood
    indices = torch.empty(num_rows, k, dtype=torch.int64)
    if ood:
        uses_z0 = torch.ones(num_rows, dtype=torch.bool)
    else:
        uses_z0 = torch.rand(num_rows, generator=generator) < 0.5
    a_rows, b_rows = uses_z0.nonzero().squeeze(1), (~uses_z0).nonzero().squeeze(1)
    partner_pool = (p - num_ood, num_ood) if ood else (1, p - num_ood - 1)  # (offset, size)
    indices[a_rows, 0] = 0
    indices[a_rows, 1:] = sample_distinct(len(a_rows), k - 1, partner_pool[1], generator, offset=partner_pool[0])
    indices[b_rows] = sample_distinct(len(b_rows), k, p - 1, generator, offset=1)
    values = torch.rand(num_rows, k, generator=generator, dtype=torch.float64) ** config.magnitude_power
    return SparseCodes(indices, values.to(dtype), p)


def _observe(codes: SparseCodes, dictionary: torch.Tensor, noise_std: float, generator: torch.Generator) -> torch.Tensor:
    y = codes.decode(dictionary)
    if noise_std > 0:
        y = y + noise_std * torch.randn(y.shape, generator=generator, dtype=y.dtype)
    return y


def make_compositional(
    config: CompositionalConfig | None = None,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    **overrides: object,
) -> CompositionalDataset:
    """Generate the study's data: ``n_samples`` ID samples (train / val halves) and ``n_samples // 2`` OOD.

    ``make_compositional(num_latents=1000, k=10, seed=0)`` is shorthand for passing a config. All draws
    come from one ``torch.Generator`` seeded with ``seed`` (CPU, so the data do not depend on ``device``).
    Cost: O(N·k·m) time and O(N·(k + m)) memory.
    """
    if config is None:
        config = CompositionalConfig(**overrides)
    elif overrides:
        config = config.model_copy(update=overrides)
        config = CompositionalConfig(**config.model_dump())
    generator = torch.Generator().manual_seed(seed)
    dictionary = random_unit_dictionary(config.num_latents, config.resolved_input_dim, generator, dtype)

    def split(num_rows: int, ood: bool) -> Split:
        codes = _sample_codes(num_rows, config, ood, generator, dtype)
        y = _observe(codes, dictionary, config.noise_std, generator)
        return Split(y, codes, codes.latent(0) > config.label_threshold)

    id_split = split(config.n_samples, ood=False)
    n_train = config.n_samples // 2
    train = Split(id_split.y[:n_train], id_split.codes[:n_train], id_split.labels[:n_train])
    val = Split(id_split.y[n_train:], id_split.codes[n_train:], id_split.labels[n_train:])
    ood_split = split(config.n_samples // 2, ood=True)
    return CompositionalDataset(config, seed, dictionary, train, val, ood_split).to(device)

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
from collections.abc import Callable

import torch
from pydantic import Field, model_validator

from dictlab.data.dataset import TRAIN, DataSizes, GeneratorConfig, GroundTruthDataset, Split
from dictlab.data.dictionaries import random_unit_dictionary
from dictlab.data.generators import make_from_fields, register_generator
from dictlab.data.sampling import sample_distinct
from dictlab.data.sparse_codes import SparseCodes, observe
from dictlab.validation import check_positive

DEFAULT_CS_CONSTANT = 2.0


def input_dim_from_cs_bound(num_latents: int, k: int, c: float = DEFAULT_CS_CONSTANT) -> int:
    """Observation dimension ``m = min(p, max(k + 1, ceil(c · k · ln(p / k))))`` (compressed-sensing bound).

    The study's rule (STUDY-SPEC §1.4), capped at p as in its phase-transition grid: with c ≤ e the bound
    never exceeds p; larger c (the Donoho–Tanner grid) reaches δ = m/p = 1. Raises ValueError unless
    1 ≤ k < p and c > 0.
    """
    if isinstance(k, bool) or isinstance(num_latents, bool) or k < 1 or num_latents < 1:
        raise ValueError(f"k and num_latents must be integers >= 1, got k={k!r}, num_latents={num_latents!r}")
    if k >= num_latents:
        raise ValueError(f"k={k} must be smaller than num_latents={num_latents} for a compressed-sensing bound")
    check_positive("cs_constant", c)
    return min(num_latents, max(k + 1, math.ceil(c * k * math.log(num_latents / k))))


class CompositionalConfig(GeneratorConfig):
    """Parameters of the compositional generator. Defaults are the study's (n=100, k=10, N=5000)."""

    num_latents: int = Field(100, ge=2, description="p: number of ground-truth latents (dictionary atoms).")
    k: int = Field(10, ge=1, description="Active latents per sample (exactly k).")
    n_samples: int = Field(5000, ge=4, description="ID samples, split into train and validation halves.")
    input_dim: int | None = Field(
        None, ge=1, description="m; None: the compressed-sensing bound min(p, max(k+1, ceil(c k ln(p/k))))."
    )
    cs_constant: float = Field(
        DEFAULT_CS_CONSTANT, gt=0, description="c of the compressed-sensing bound (used when input_dim is None)."
    )
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
        if self.input_dim is not None:
            return self.input_dim
        return input_dim_from_cs_bound(self.num_latents, self.k, self.cs_constant)

    @property
    def resolved_num_ood(self) -> int:
        return self.num_ood if self.num_ood is not None else self.num_latents // 2

    def canonical(self) -> CompositionalConfig:
        """input_dim and num_ood explicit (cs_constant then has no effect and takes its default): configs that
        generate the same data are equal."""
        return self.model_copy(
            update={
                "input_dim": self.resolved_input_dim,
                "num_ood": self.resolved_num_ood,
                "cs_constant": DEFAULT_CS_CONSTANT,
            }
        )

    def sizes(self) -> DataSizes:
        return DataSizes(self.num_latents, self.k, self.resolved_input_dim, self.n_samples // 2)


def sample_compositional_supports(
    num_rows: int, num_items: int, k: int, num_ood: int, ood: bool, generator: torch.Generator
) -> torch.Tensor:
    """(N, k) distinct item indices per row by the study's settings, for items 0 … num_items−1 whose last
    ``num_ood`` form the OOD pool and 1 … num_items−num_ood−1 the ID pool: ID rows are setting A (item 0 first,
    then k−1 from the ID pool) or B (k items from 1 … num_items−1) with probability ½ each; OOD rows are setting
    C (item 0 first, then k−1 from the OOD pool). The items are latents here and parents in ``hierarchical``."""
    indices = torch.empty(num_rows, k, dtype=torch.int64)
    if ood:
        uses_first = torch.ones(num_rows, dtype=torch.bool)
    else:
        uses_first = torch.rand(num_rows, generator=generator) < 0.5
    a_rows, b_rows = uses_first.nonzero().squeeze(1), (~uses_first).nonzero().squeeze(1)
    offset, size = (num_items - num_ood, num_ood) if ood else (1, num_items - num_ood - 1)
    indices[a_rows, 0] = 0
    indices[a_rows, 1:] = sample_distinct(len(a_rows), k - 1, size, generator, offset=offset)
    indices[b_rows] = sample_distinct(len(b_rows), k, num_items - 1, generator, offset=1)
    return indices


def id_ood_splits(n_samples: int, make_split: Callable[[int, bool], Split]) -> dict[str, Split]:
    """``train`` / ``id`` halves of ``make_split(n_samples, ood=False)`` and ``ood`` = ``make_split(n_samples // 2,
    ood=True)``, drawn in that order (the splits of every generator that asks the compositional question)."""
    id_samples = make_split(n_samples, False)
    n_train = n_samples // 2
    return {
        TRAIN: id_samples.rows(slice(0, n_train)),
        "id": id_samples.rows(slice(n_train, None)),
        "ood": make_split(n_samples // 2, True),
    }


def _sample_codes(
    num_rows: int, config: CompositionalConfig, ood: bool, generator: torch.Generator, dtype: torch.dtype
) -> SparseCodes:
    p, k = config.num_latents, config.k
    indices = sample_compositional_supports(num_rows, p, k, config.resolved_num_ood, ood, generator)
    values = torch.rand(num_rows, k, generator=generator, dtype=torch.float64) ** config.magnitude_power
    return SparseCodes(indices, values.to(dtype), p)


@register_generator(
    "compositional",
    CompositionalConfig,
    "y = A z with exactly-k-sparse z; ID train/id splits and an OOD split of latent combinations never seen together",
)
def generate_compositional(config: CompositionalConfig, seed: int, dtype: torch.dtype) -> GroundTruthDataset:
    """The registered generator: ``n_samples`` ID samples (``train`` / ``id`` halves) and ``n_samples // 2``
    OOD samples, every draw from one CPU ``torch.Generator`` seeded with ``seed``.
    Cost: O(N·k·m) time and O(N·(k + m)) memory."""
    generator = torch.Generator().manual_seed(seed)
    dictionary = random_unit_dictionary(config.num_latents, config.resolved_input_dim, generator, dtype)

    def split(num_rows: int, ood: bool) -> Split:
        codes = _sample_codes(num_rows, config, ood, generator, dtype)
        y = observe(codes, dictionary, config.noise_std, generator)
        return Split(y, codes, codes.latent(0) > config.label_threshold)

    return GroundTruthDataset(config, seed, dictionary, id_ood_splits(config.n_samples, split), k=config.k)


def make_compositional(
    config: CompositionalConfig | None = None,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    **fields: object,
) -> GroundTruthDataset:
    """The study's data; ``make_compositional(num_latents=1000, k=10, seed=0)`` is shorthand for a config
    (``fields`` update ``config`` when both are given). Splits ``train``, ``id`` and ``ood``."""
    return make_from_fields(
        CompositionalConfig, config, fields, seed=seed, dtype=dtype, device=device, where="make_compositional"
    )

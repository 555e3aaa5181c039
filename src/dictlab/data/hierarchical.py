"""Hierarchical concepts with ground truth: parents that fire if and only if one of their children does.

Def. 3.9 of seed 004 (hierarchical concept structure): a parent concept ``p`` with sub-concepts ``c_1 … c_k``
satisfies ``p(x) > 0 ⇔ ∃ i: c_i(x) > 0``. Theorem 3.10 shows such structures make absorbing solutions
(one unit for a child, another for "the parent minus that child") realizable partial minima; seed 003 reads
hierarchical splitting and absorption off the same structure. These data make both measurable: the true
parent and child atoms and which one fired in every sample are known.

Latents, atoms as rows of ``D`` (p, m), ``Y = Z @ D`` (the papers' ``A = D.T``):

* ``0 … P-1`` — the ``P = num_parents`` parent concepts;
* ``P + i·C … P + i·C + C-1`` — the ``C = children_per_parent`` children of parent i;
* the last ``num_roots_free`` latents — independent features outside the hierarchy.

Every sample has exactly ``k_parents`` active parents and ``k_free`` active free features. Each active
parent has exactly one active child (``exclusive_children``, the default: k = 2·k_parents + k_free is fixed)
or a uniformly random number ``1 … max_children_active`` of distinct children (then k varies and the data's
``k`` is None). Magnitudes are U[magnitude_min, magnitude_max], a parent's times ``parent_magnitude_scale``.

``SparseCodes`` store the same number of entries in every row, so with up to ``max_children_active > 1``
children each active parent stores ``max_children_active`` distinct children of its own and the inactive
ones hold the value 0 (indices stay distinct: ``to_dense``, ``decode``, ``latent`` and the MCC, which skips
zero entries, are exact). *Active* is ``value != 0``, never "stored in ``indices``" (``Hierarchy.check``).

The compositional question (the generator ``compositional``'s settings A/B/C, applied to parents): parent 0
carries the label (by default ``z_0 >`` the middle of its magnitude range, as compositional's ``z0 > 0.5``:
a quarter of ID and half of OOD samples are positive; ``label="parent_active"`` makes every OOD sample
positive, so OOD AUC is undefined and OOD accuracy is the probe's recall). The last ``num_ood`` parents form
the OOD pool, parents ``1 … P - num_ood - 1`` the ID pool. Active parents are drawn as

* setting A: parent 0 plus k_parents-1 parents of the ID pool;
* setting B: k_parents parents of ``1 … P-1`` (both pools, parent 0 inactive);
* setting C (OOD only): parent 0 plus k_parents-1 parents of the OOD pool.

ID samples are A or B with probability 1/2 each, so parent 0 (and any of its children) never meets an
OOD-pool parent (or any of its children) in ID data; the OOD split shows exactly those combinations.
Children and free features are drawn the same way in every split, and every split obeys Def. 3.9.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator

from dictlab.data.compositional import (
    DEFAULT_CS_CONSTANT,
    id_ood_splits,
    input_dim_from_cs_bound,
    sample_compositional_supports,
)
from dictlab.data.dataset import DataSizes, GeneratorConfig, GroundTruthDataset, Hierarchy, Split
from dictlab.data.dictionaries import random_unit_dictionary
from dictlab.data.generators import make_from_fields, register_generator
from dictlab.data.sampling import sample_distinct
from dictlab.data.sparse_codes import SparseCodes, observe


class HierarchicalConfig(GeneratorConfig):
    """Parameters of the hierarchical generator. Defaults: 10 parents × 4 children and 20 free features
    (p = 70), 3 parents and 2 free features per sample (k = 8), m = 35 from the compressed-sensing bound."""

    num_parents: int = Field(10, ge=3, description="P: parent concepts (latents 0 … P-1); parent 0 is labelled.")
    children_per_parent: int = Field(4, ge=1, description="C: children (sub-concepts) of every parent.")
    num_roots_free: int = Field(20, ge=0, description="Free latents outside the hierarchy (the last latents).")
    k_parents: int = Field(3, ge=2, description="Active parents per sample (exactly).")
    k_free: int = Field(2, ge=0, description="Active free latents per sample (exactly).")
    exclusive_children: bool = Field(True, description="One active child per active parent (k fixed).")
    max_children_active: int | None = Field(
        None, ge=1, description="Without exclusive children: 1 … this many active children (None: C)."
    )
    n_samples: int = Field(5000, ge=4, description="ID samples, split into train and id halves.")
    input_dim: int | None = Field(
        None, ge=1, description="m; None: the compressed-sensing bound with p and the mean number of active latents."
    )
    cs_constant: float = Field(
        DEFAULT_CS_CONSTANT, gt=0, description="c of the compressed-sensing bound (used when input_dim is None)."
    )
    num_ood: int | None = Field(None, ge=1, description="Size of the OOD pool (the last parents); None: P // 2.")
    magnitude_min: float = Field(0.5, gt=0, description="Active magnitudes are U[magnitude_min, magnitude_max].")
    magnitude_max: float = Field(1.5, gt=0, description="Upper end of the active magnitudes.")
    parent_magnitude_scale: float = Field(1.0, gt=0, description="A parent's magnitude is this times a U draw.")
    child_parent_cosine: float = Field(
        0.0, ge=0, lt=1, description="Cosine of every child's atom with its parent's (0: independent random atoms)."
    )
    noise_std: float = Field(0.0, ge=0, description="Std of additive Gaussian observation noise (0: y = z D exactly).")
    label: Literal["parent_magnitude", "parent_active", "child_active"] = Field(
        "parent_magnitude",
        description="parent_magnitude: z_0 > the middle of parent 0's magnitude range (compositional's z0 > 0.5); "
        "parent_active: parent 0 active (every OOD sample is positive); child_active: parent 0's first child active.",
    )

    @model_validator(mode="after")
    def _check(self) -> HierarchicalConfig:
        num_parents, kp = self.num_parents, self.k_parents
        if self.k_free > self.num_roots_free:
            raise ValueError(f"k_free={self.k_free} must be <= num_roots_free={self.num_roots_free}")
        if kp > num_parents - 1:
            raise ValueError(f"k_parents={kp} must be < num_parents={num_parents} (setting B draws them from 1 … P-1)")
        if not self.exclusive_children and self.resolved_max_children > self.children_per_parent:
            raise ValueError(
                f"max_children_active={self.max_children_active} must be <= children_per_parent="
                f"{self.children_per_parent}"
            )
        if self.magnitude_max < self.magnitude_min:
            raise ValueError(f"magnitude_max={self.magnitude_max} must be >= magnitude_min={self.magnitude_min}")
        num_ood = self.resolved_num_ood
        id_pool = num_parents - num_ood - 1
        if num_ood >= num_parents - 1:
            raise ValueError(f"num_ood={num_ood} must be < num_parents - 1 = {num_parents - 1} to leave an ID pool")
        if kp - 1 > id_pool:
            raise ValueError(
                f"k_parents={kp}: setting A needs k_parents-1={kp - 1} parents from the ID pool of size {id_pool}"
            )
        if kp - 1 > num_ood:
            raise ValueError(
                f"k_parents={kp}: setting C needs k_parents-1={kp - 1} parents from the OOD pool "
                f"of size num_ood={num_ood}"
            )
        p, m = self.num_latents, self.resolved_input_dim
        if m > p:
            raise ValueError(f"input_dim={m} must be <= num_latents={p} = P (1 + C) + num_roots_free (m <= p)")
        if m < self.mean_active_ceil:
            raise ValueError(
                f"input_dim={m} must be >= {self.mean_active_ceil}, the mean number of active latents (rounded up)"
            )
        return self

    @property
    def num_latents(self) -> int:
        """p = P (1 + C) + num_roots_free."""
        return self.num_parents * (1 + self.children_per_parent) + self.num_roots_free

    @property
    def resolved_max_children(self) -> int:
        """Most active children per active parent: 1 with exclusive children, else max_children_active or C."""
        if self.exclusive_children:
            return 1
        return self.max_children_active if self.max_children_active is not None else self.children_per_parent

    @property
    def k(self) -> int | None:
        """Active latents per sample where fixed (one child per parent): 2 k_parents + k_free; else None."""
        return 2 * self.k_parents + self.k_free if self.resolved_max_children == 1 else None

    @property
    def mean_active(self) -> float:
        """Expected active latents per sample: k_parents (1 + (1 + max_children) / 2) + k_free."""
        return self.k_parents * (1 + (1 + self.resolved_max_children) / 2) + self.k_free

    @property
    def mean_active_ceil(self) -> int:
        return math.ceil(self.mean_active)

    @property
    def resolved_input_dim(self) -> int:
        if self.input_dim is not None:
            return self.input_dim
        return input_dim_from_cs_bound(self.num_latents, self.mean_active_ceil, self.cs_constant)

    @property
    def resolved_num_ood(self) -> int:
        return self.num_ood if self.num_ood is not None else self.num_parents // 2

    def labels(self, codes: SparseCodes) -> torch.Tensor:
        """(N,) bool labels of ``codes`` by the rule ``label``."""
        if self.label == "parent_active":
            return codes.latent(0) != 0
        if self.label == "child_active":
            return codes.latent(self.num_parents) != 0
        middle = self.parent_magnitude_scale * (self.magnitude_min + self.magnitude_max) / 2
        return codes.latent(0) > middle

    def hierarchy(self) -> Hierarchy:
        """The parent of every latent: parent i for its children, −1 for parents and free latents."""
        parent = torch.full((self.num_latents,), -1, dtype=torch.int64)
        num_parents, c = self.num_parents, self.children_per_parent
        parent[num_parents : num_parents * (1 + c)] = torch.arange(num_parents).repeat_interleave(c)
        return Hierarchy(parent)

    def canonical(self) -> HierarchicalConfig:
        """input_dim, num_ood and max_children_active explicit (cs_constant then takes its default; one child
        per parent is ``exclusive_children=True`` with max_children_active None): configs that make the same data
        are equal."""
        one_child = self.resolved_max_children == 1
        return self.model_copy(
            update={
                "input_dim": self.resolved_input_dim,
                "num_ood": self.resolved_num_ood,
                "cs_constant": DEFAULT_CS_CONSTANT,
                "exclusive_children": one_child,
                "max_children_active": None if one_child else self.resolved_max_children,
            }
        )

    def sizes(self) -> DataSizes:
        return DataSizes(self.num_latents, self.k, self.resolved_input_dim, self.n_samples // 2)


def hierarchical_dictionary(
    config: HierarchicalConfig, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(p, m) unit atoms: i.i.d. random (``random_unit_dictionary``); with ``child_parent_cosine`` c > 0 each
    child's atom is ``c·parent + √(1−c²)·u``, u its random atom made orthogonal to the parent's and normalised,
    so the child's cosine with its parent is exactly c (siblings then have cosine c² in expectation). With c = 0
    every atom is independent: a child's cosine with its parent has mean 0 and std ≈ 1/√m."""
    p, m = config.num_latents, config.resolved_input_dim
    atoms = random_unit_dictionary(p, m, generator, torch.float64)
    c = config.child_parent_cosine
    if c > 0:
        num_parents, per = config.num_parents, config.children_per_parent
        rows = torch.arange(num_parents, num_parents * (1 + per))
        parents = atoms[torch.arange(num_parents).repeat_interleave(per)]
        u = atoms[rows]
        u = u - (u * parents).sum(dim=1, keepdim=True) * parents
        u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)
        atoms[rows] = c * parents + math.sqrt(1 - c * c) * u
        atoms[rows] /= atoms[rows].norm(dim=1, keepdim=True)
    return atoms.to(dtype)


def _sample_codes(
    num_rows: int, config: HierarchicalConfig, ood: bool, generator: torch.Generator, dtype: torch.dtype
) -> SparseCodes:
    """Codes with k_parents (1 + max_children) + k_free stored entries per row, in column blocks: the active
    parents; then for each of them (same order) ``max_children`` distinct children of which a random number
    1 … max_children are active and the rest stored with value 0; then the active free latents."""
    num_parents, per, kp = config.num_parents, config.children_per_parent, config.k_parents
    most = config.resolved_max_children
    parents = sample_compositional_supports(num_rows, num_parents, kp, config.resolved_num_ood, ood, generator)
    if most == 1:
        offsets = torch.randint(0, per, (num_rows, kp, 1), generator=generator)
        active = torch.ones(num_rows, kp, 1, dtype=torch.bool)
    else:  # a uniformly random ordered subset of the children; the first `count` of them fire
        offsets = torch.rand(num_rows, kp, per, generator=generator).argsort(dim=2)[:, :, :most]
        count = torch.randint(1, most + 1, (num_rows, kp, 1), generator=generator)
        active = torch.arange(most) < count
    children = (num_parents + parents[:, :, None] * per + offsets).reshape(num_rows, kp * most)
    free = sample_distinct(num_rows, config.k_free, config.num_roots_free, generator, offset=num_parents * (1 + per))
    indices = torch.cat([parents, children, free], dim=1)
    low, high = config.magnitude_min, config.magnitude_max
    values = low + (high - low) * torch.rand(indices.shape, generator=generator, dtype=torch.float64)
    values[:, :kp] *= config.parent_magnitude_scale
    values[:, kp : kp * (1 + most)] *= active.reshape(num_rows, kp * most)
    return SparseCodes(indices, values.to(dtype), config.num_latents)


@register_generator(
    "hierarchical",
    HierarchicalConfig,
    "parents active iff a child is (Def. 3.9); an OOD split of parent combinations never seen together",
)
def generate_hierarchical(config: HierarchicalConfig, seed: int, dtype: torch.dtype) -> GroundTruthDataset:
    """The registered generator: ``n_samples`` ID samples (``train`` / ``id`` halves) and ``n_samples // 2``
    OOD samples, labels by ``config.label``, the config's ``Hierarchy``; every draw from one CPU
    ``torch.Generator`` seeded with ``seed``. Cost: O(N·k·m) time, O(N·(k_parents·C + k + m)) memory."""
    generator = torch.Generator().manual_seed(seed)
    dictionary = hierarchical_dictionary(config, generator, dtype)

    def split(num_rows: int, ood: bool) -> Split:
        codes = _sample_codes(num_rows, config, ood, generator, dtype)
        y = observe(codes, dictionary, config.noise_std, generator)
        return Split(y, codes, config.labels(codes))

    splits = id_ood_splits(config.n_samples, split)
    return GroundTruthDataset(config, seed, dictionary, splits, k=config.k, hierarchy=config.hierarchy())


def make_hierarchical(
    config: HierarchicalConfig | None = None,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    **fields: object,
) -> GroundTruthDataset:
    """``make_hierarchical(num_parents=20, seed=0)`` is shorthand for a config (``fields`` update ``config``
    when both are given). Splits ``train``, ``id`` and ``ood``."""
    return make_from_fields(
        HierarchicalConfig, config, fields, seed=seed, dtype=dtype, device=device, where="make_hierarchical"
    )

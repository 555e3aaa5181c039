"""The ground-truth dataset every generator returns, and the config protocol every generator's settings follow.

A dataset is a true dictionary ``D`` (p, m), atoms as rows (the papers' ``A = D.T``), and named splits of
observations ``Y`` (N, m) with, where the generator knows them, the true codes (N, p, stored sparse) and
labels (N,). Methods are fitted on the split ``train``; every other split is scored — by convention ``id``
(held-out in-distribution samples) and ``ood`` (compositional out-of-distribution samples), in that order.
A generator with hierarchical concepts also gives the ``Hierarchy`` of its latents (Def. 3.9 of seed 004).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from dictlab.config import Config
from dictlab.data.sparse_codes import SparseCodes

TRAIN = "train"


@dataclass(frozen=True)
class DataSizes:
    """What a method may know about a dataset before it exists: p latents, k active per sample (None if the
    generator has no fixed k), m observed dimensions, the number of training samples, the width of the
    targets where the data have them (transcoders), and the widths of the sources that make up the m observed
    dimensions where there are several (crosscoders; they sum to m)."""

    num_latents: int
    k: int | None
    input_dim: int
    n_train: int
    target_dim: int | None = None
    sources: tuple[int, ...] | None = None


class GeneratorConfig(Config):
    """Settings of one generator; each generator subclasses this and registers the pair (see ``generators``).

    ``generator`` is the registered name (set by the registration). ``canonical()`` is the same data with
    every derived field explicit, so two configs that make the same data compare (and hash) equal.
    """

    generator: ClassVar[str] = ""

    def sizes(self) -> DataSizes:
        raise NotImplementedError

    def canonical(self) -> GeneratorConfig:
        return self

    def to_spec(self) -> dict[str, Any]:
        """``{"generator": name, **fields}`` of the canonical config: the data part of a run's identity."""
        return {"generator": self.generator, **self.canonical().model_dump(mode="json")}


@dataclass(frozen=True)
class Split:
    """One split: observations ``y`` (N, m); true ``codes`` (N, p, sparse), ``labels`` (N,) bool and ``target``
    (N, r) where known. A target is what a transcoder predicts from ``y``: another linear read-out of the same
    codes, ``target = codes @ target_dictionary`` (seed 004's x_r = W_r x)."""

    y: torch.Tensor
    codes: SparseCodes | None = None
    labels: torch.Tensor | None = None
    target: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.y.shape[0]
        for name, part in (("codes", self.codes), ("labels", self.labels), ("target", self.target)):
            if part is not None and len(part) != n:
                raise ValueError(f"split {name} have {len(part)} rows but y has {n}")

    def __len__(self) -> int:
        return self.y.shape[0]

    def rows(self, index: slice | torch.Tensor) -> Split:
        """The split restricted to ``index`` (a slice or index tensor of rows)."""
        return Split(
            self.y[index],
            None if self.codes is None else self.codes[index],
            None if self.labels is None else self.labels[index],
            None if self.target is None else self.target[index],
        )

    def to(self, device: torch.device | str) -> Split:
        return Split(
            self.y.to(device),
            None if self.codes is None else self.codes.to(device),
            None if self.labels is None else self.labels.to(device),
            None if self.target is None else self.target.to(device),
        )


@dataclass(frozen=True)
class Hierarchy:
    """Which latent is a sub-concept of which: ``parent[j]`` is the parent latent of latent j, −1 for a root.

    The data obey Def. 3.9 of seed 004 (hierarchical concept structure): a parent is active if and only if at
    least one of its children is active — children fire only with their parent, and a parent never fires
    alone. *Active* means a non-zero value; true codes may store zero entries (the hierarchical generator's
    rows with a varying number of active children do), so read activity from ``values != 0``, never from
    ``indices`` alone. ``parent`` is (p,) int64, acyclic (every chain of parents ends at a root).
    """

    parent: torch.Tensor

    def __post_init__(self) -> None:
        parent = self.parent
        if parent.ndim != 1 or parent.dtype != torch.int64:
            raise ValueError(f"parent must be a (p,) int64 tensor, got {tuple(parent.shape)} {parent.dtype}")
        p = parent.numel()
        bad = ((parent < -1) | (parent >= p)).nonzero()
        if bad.numel():
            j = int(bad[0])
            raise ValueError(f"parent[{j}]={int(parent[j])} must be -1 (a root) or a latent in 0 … {p - 1}")
        self._ancestry_depth()  # raises on a cycle

    def _ancestry_depth(self) -> int:
        parent = self.parent
        current, depth = parent.clone(), 0
        while bool((current >= 0).any()):
            depth += 1
            if depth > parent.numel():
                j = int((current >= 0).nonzero()[0])
                raise ValueError(f"parent has a cycle through latent {j}: no chain of parents may return to itself")
            current = torch.where(current >= 0, parent[current.clamp_min(0)], current)
        return depth

    @property
    def num_latents(self) -> int:
        return self.parent.numel()

    @property
    def depth(self) -> int:
        """Parent links on the longest chain from a latent to its root: 0 for flat latents, 1 for parents and
        children, 2 with grandchildren."""
        return self._ancestry_depth()

    def children(self, j: int) -> torch.Tensor:
        """The sorted latents whose parent is ``j`` (empty for a leaf), int64."""
        return (self.parent == j).nonzero().squeeze(1)

    def parents(self) -> torch.Tensor:
        """The sorted latents that have at least one child, int64."""
        return torch.unique(self.parent[self.parent >= 0])

    def leaves(self) -> torch.Tensor:
        """The sorted latents without children (free latents included), int64."""
        return (~self._has_children(self.parent)).nonzero().squeeze(1)

    @staticmethod
    def _has_children(parent: torch.Tensor) -> torch.Tensor:
        """(p,) bool: latent j is some latent's parent."""
        has = torch.zeros(parent.numel(), dtype=torch.bool, device=parent.device)
        has[parent[parent >= 0]] = True
        return has

    def check(self, codes: SparseCodes | torch.Tensor) -> None:
        """Raise ValueError naming the first sample and latent that violate Def. 3.9: a child active without its
        parent, or a parent active with no child active. ``codes`` are sparse or dense (N, p); active = non-zero.
        Memory O(N·k²) for sparse codes with k stored entries per row, O(N·p) for dense ones."""
        p = self.num_latents
        shape: tuple[int, ...]
        if isinstance(codes, SparseCodes):
            shape, device = (len(codes), codes.num_latents), codes.indices.device
        else:
            shape, device = tuple(codes.shape), codes.device
        if len(shape) != 2 or shape[1] != p:
            raise ValueError(f"codes must be (N, {p}) for a hierarchy of {p} latents, got {shape}")
        parent = self.parent.to(device)
        if isinstance(codes, SparseCodes):
            orphan, lonely = self._violations_sparse(codes, parent)
        else:
            orphan, lonely = self._violations_dense(codes, parent)
        if orphan is not None:
            row, j = orphan
            raise ValueError(
                f"sample {row}: latent {j} is active without its parent {int(parent[j])} "
                "(Def. 3.9: children fire only with their parent)"
            )
        if lonely is not None:
            row, j = lonely
            raise ValueError(
                f"sample {row}: parent {j} is active with no child active (Def. 3.9: a parent fires iff a child does)"
            )

    @staticmethod
    def _first(mask: torch.Tensor, columns: torch.Tensor) -> tuple[int, int] | None:
        hits = mask.nonzero()
        if hits.numel() == 0:
            return None
        row, col = (int(v) for v in hits[0])
        return row, int(columns[row, col]) if columns.ndim == 2 else int(columns[col])

    def _violations_dense(
        self, codes: torch.Tensor, parent: torch.Tensor
    ) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        active = codes != 0
        child = (parent >= 0).nonzero().squeeze(1)
        orphan = active[:, child] & ~active[:, parent[child]]
        count = torch.zeros(active.shape, dtype=torch.int64, device=active.device)
        count.index_add_(1, parent[child], active[:, child].to(torch.int64))
        lonely = active & self._has_children(parent) & (count == 0)
        every = torch.arange(self.num_latents, device=active.device)
        return self._first(orphan, child), self._first(lonely, every)

    def _violations_sparse(
        self, codes: SparseCodes, parent: torch.Tensor
    ) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        index, active = codes.indices, codes.values != 0  # (N, k) each
        up = parent[index]  # the parent of every stored entry, -1 for roots
        same = index[:, None, :] == up[:, :, None]  # [n, a, b]: entry b is the parent of entry a
        parent_on = (same & active[:, None, :]).any(dim=2)
        orphan = active & (up >= 0) & ~parent_on
        # entry a is a parent with an active child b: index[a] == up[b] for an active b
        child_on = ((index[:, :, None] == up[:, None, :]) & active[:, None, :]).any(dim=2)
        lonely = active & self._has_children(parent)[index] & ~child_on
        return self._first(orphan, index), self._first(lonely, index)

    def to(self, device: torch.device | str) -> Hierarchy:
        return Hierarchy(self.parent.to(device))


@dataclass(frozen=True)
class GroundTruthDataset:
    """A generator's output: the true dictionary (p, m), named splits (``train`` first) and how it was made.

    ``data["ood"]`` is a split by name; ``data.train`` the training split; ``evaluation_splits()`` every
    other split in order. ``k`` is the number of active latents per sample where the generator fixes it;
    ``hierarchy`` the parent of every latent where the latents form concepts and sub-concepts (else None).

    ``target_dictionary`` (p, r) is the second read-out of the same latents where every split has a ``target``
    (seed 004's ``W_r.T``: what a transcoder's decoder should learn). ``sources`` are the widths of the blocks
    of ``y`` where the observations concatenate several sources ``[y¹, …, yˢ]`` (seed 004's crosscoder data:
    each source its own (p, m_s) block of ``dictionary``; they sum to m).
    """

    config: GeneratorConfig
    seed: int
    dictionary: torch.Tensor
    splits: Mapping[str, Split]
    k: int | None = None
    hierarchy: Hierarchy | None = None
    target_dictionary: torch.Tensor | None = None
    sources: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if TRAIN not in self.splits:
            raise ValueError(f"a dataset needs a {TRAIN!r} split; got {', '.join(self.splits)}")
        p, m = self.dictionary.shape
        for name, split in self.splits.items():
            if split.y.ndim != 2 or split.y.shape[1] != m:
                raise ValueError(
                    f"split {name!r}: y must be (N, {m}) for a ({p}, {m}) dictionary, got {tuple(split.y.shape)}"
                )
            if split.codes is not None and split.codes.num_latents != p:
                raise ValueError(f"split {name!r}: codes have {split.codes.num_latents} latents, the dictionary {p}")
        if self.hierarchy is not None and self.hierarchy.num_latents != p:
            raise ValueError(f"the hierarchy has {self.hierarchy.num_latents} latents, the dictionary {p}")
        self._check_targets(p)
        if self.sources is not None and (sum(self.sources) != m or min(self.sources, default=0) < 1):
            raise ValueError(f"sources {self.sources} must be positive widths summing to the {m} observed dimensions")

    def _check_targets(self, p: int) -> None:
        has_target = [split.target is not None for split in self.splits.values()]
        if self.target_dictionary is None:
            if any(has_target):
                raise ValueError("splits have targets but the dataset has no target_dictionary")
            return
        if self.target_dictionary.ndim != 2 or self.target_dictionary.shape[0] != p:
            shape = tuple(self.target_dictionary.shape)
            raise ValueError(f"target_dictionary must be ({p}, r) for {p} latents, got {shape}")
        r = self.target_dictionary.shape[1]
        for name, split in self.splits.items():
            if split.target is None or split.target.ndim != 2 or split.target.shape[1] != r:
                got = "none" if split.target is None else tuple(split.target.shape)
                raise ValueError(f"split {name!r}: target must be (N, {r}) like the target_dictionary, got {got}")

    @property
    def generator(self) -> str:
        return self.config.generator

    @property
    def train(self) -> Split:
        return self.splits[TRAIN]

    def __getitem__(self, name: str) -> Split:
        try:
            return self.splits[name]
        except KeyError:
            raise ValueError(
                f"this {self.generator} dataset has no split {name!r}; it has {', '.join(self.splits)}"
            ) from None

    def evaluation_splits(self) -> dict[str, Split]:
        """Every split but ``train``, in order (``id``, ``ood`` for the compositional generator)."""
        return {name: split for name, split in self.splits.items() if name != TRAIN}

    @property
    def num_latents(self) -> int:
        return self.dictionary.shape[0]

    @property
    def input_dim(self) -> int:
        return self.dictionary.shape[1]

    @property
    def target_dim(self) -> int | None:
        """r, the width of the targets; None without targets."""
        return None if self.target_dictionary is None else self.target_dictionary.shape[1]

    def sizes(self) -> DataSizes:
        return DataSizes(self.num_latents, self.k, self.input_dim, len(self.train), self.target_dim, self.sources)

    def to(self, device: torch.device | str) -> GroundTruthDataset:
        splits = {name: split.to(device) for name, split in self.splits.items()}
        hierarchy = None if self.hierarchy is None else self.hierarchy.to(device)
        target = None if self.target_dictionary is None else self.target_dictionary.to(device)
        return GroundTruthDataset(
            self.config, self.seed, self.dictionary.to(device), splits, self.k, hierarchy, target, self.sources
        )

"""The ground-truth dataset every generator returns, and the config protocol every generator's settings follow.

A dataset is a true dictionary ``D`` (p, m), atoms as rows (the papers' ``A = D.T``), and named splits of
observations ``Y`` (N, m) with, where the generator knows them, the true codes (N, p, stored sparse) and
labels (N,). Methods are fitted on the split ``train``; every other split is scored — by convention ``id``
(held-out in-distribution samples) and ``ood`` (compositional out-of-distribution samples), in that order.
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
    generator has no fixed k), m observed dimensions, and the number of training samples."""

    num_latents: int
    k: int | None
    input_dim: int
    n_train: int


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
    """One split: observations ``y`` (N, m); true ``codes`` (N, p, sparse) and ``labels`` (N,) bool where known."""

    y: torch.Tensor
    codes: SparseCodes | None = None
    labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.y.shape[0]
        for name, part in (("codes", self.codes), ("labels", self.labels)):
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
        )

    def to(self, device: torch.device | str) -> Split:
        return Split(
            self.y.to(device),
            None if self.codes is None else self.codes.to(device),
            None if self.labels is None else self.labels.to(device),
        )


@dataclass(frozen=True)
class GroundTruthDataset:
    """A generator's output: the true dictionary (p, m), named splits (``train`` first) and how it was made.

    ``data["ood"]`` is a split by name; ``data.train`` the training split; ``evaluation_splits()`` every
    other split in order. ``k`` is the number of active latents per sample where the generator fixes it.
    """

    config: GeneratorConfig
    seed: int
    dictionary: torch.Tensor
    splits: Mapping[str, Split]
    k: int | None = None

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

    def sizes(self) -> DataSizes:
        return DataSizes(self.num_latents, self.k, self.input_dim, len(self.train))

    def to(self, device: torch.device | str) -> GroundTruthDataset:
        splits = {name: split.to(device) for name, split in self.splits.items()}
        return GroundTruthDataset(self.config, self.seed, self.dictionary.to(device), splits, self.k)

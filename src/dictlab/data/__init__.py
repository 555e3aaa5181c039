"""Generators with ground truth."""

from dictlab.data.compositional import (
    CompositionalConfig,
    CompositionalDataset,
    Split,
    input_dim_from_cs_bound,
    make_compositional,
    random_unit_dictionary,
)
from dictlab.data.sampling import sample_distinct
from dictlab.data.sparse_codes import SparseCodes

__all__ = [
    "CompositionalConfig",
    "CompositionalDataset",
    "SparseCodes",
    "Split",
    "input_dim_from_cs_bound",
    "make_compositional",
    "random_unit_dictionary",
    "sample_distinct",
]

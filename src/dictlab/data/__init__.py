"""Data with ground truth: the dataset protocol, the generator registry, and the generators.

``make_dataset({"generator": "compositional", "num_latents": 1000}, seed=0)`` builds any registered generator's
data from a table; ``make_compositional(num_latents=1000, seed=0)`` is the study's generator directly,
``make_hierarchical(num_parents=10, seed=0)`` the hierarchical one (parents active iff a child is), ``make_lrb(seed=0)``
seed 004's Linear Representation Bench (unit features of bounded interference, Bernoulli(1 − S) activity).
"""

from dictlab.data.compositional import CompositionalConfig, input_dim_from_cs_bound, make_compositional
from dictlab.data.dataset import TRAIN, DataSizes, GeneratorConfig, GroundTruthDataset, Hierarchy, Split
from dictlab.data.dictionaries import random_unit_dictionary
from dictlab.data.generators import GENERATORS, data_config, data_spec, make_dataset, register_generator
from dictlab.data.hierarchical import HierarchicalConfig, make_hierarchical
from dictlab.data.lrb import LRBConfig, bounded_interference_features, interference_loss, make_lrb
from dictlab.data.sampling import sample_distinct
from dictlab.data.sparse_codes import SparseCodes

__all__ = [
    "GENERATORS",
    "TRAIN",
    "CompositionalConfig",
    "DataSizes",
    "GeneratorConfig",
    "GroundTruthDataset",
    "HierarchicalConfig",
    "Hierarchy",
    "LRBConfig",
    "SparseCodes",
    "Split",
    "bounded_interference_features",
    "data_config",
    "data_spec",
    "input_dim_from_cs_bound",
    "interference_loss",
    "make_compositional",
    "make_dataset",
    "make_hierarchical",
    "make_lrb",
    "random_unit_dictionary",
    "register_generator",
    "sample_distinct",
]

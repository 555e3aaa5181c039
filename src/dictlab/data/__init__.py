"""Data with ground truth: the dataset protocol, the generator registry, and the generators.

``make_dataset({"generator": "compositional", "num_latents": 1000}, seed=0)`` builds any registered generator's
data from a table; ``make_compositional(num_latents=1000, seed=0)`` is the study's generator directly.
"""

from dictlab.data.compositional import CompositionalConfig, input_dim_from_cs_bound, make_compositional
from dictlab.data.dataset import TRAIN, DataSizes, GeneratorConfig, GroundTruthDataset, Split
from dictlab.data.dictionaries import random_unit_dictionary
from dictlab.data.generators import GENERATORS, data_config, data_spec, make_dataset, register_generator
from dictlab.data.sampling import sample_distinct
from dictlab.data.sparse_codes import SparseCodes

__all__ = [
    "GENERATORS",
    "TRAIN",
    "CompositionalConfig",
    "DataSizes",
    "GeneratorConfig",
    "GroundTruthDataset",
    "SparseCodes",
    "Split",
    "data_config",
    "data_spec",
    "input_dim_from_cs_bound",
    "make_compositional",
    "make_dataset",
    "random_unit_dictionary",
    "register_generator",
    "sample_distinct",
]

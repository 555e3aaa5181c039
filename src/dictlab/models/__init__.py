"""Models: a dictionary plus an inference procedure, saved as safetensors + JSON."""

from dictlab.models.base import MODEL_KINDS, DictionaryModel, FitCache, FitContext
from dictlab.models.io import load_model, save_model
from dictlab.models.sparse_coding import SparseCodingModel

__all__ = ["MODEL_KINDS", "DictionaryModel", "FitCache", "FitContext", "SparseCodingModel", "load_model", "save_model"]

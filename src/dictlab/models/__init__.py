"""Models: a dictionary plus an inference procedure, saved as safetensors + JSON."""

from dictlab.models.base import MODEL_KINDS, Anchors, DictionaryModel, FitCache, FitContext
from dictlab.models.history import TrainingHistory
from dictlab.models.io import MODEL_FORMATS, ModelFormat, load_model, save_model
from dictlab.models.sparse_coding import SparseCodingModel

__all__ = [
    "MODEL_FORMATS",
    "MODEL_KINDS",
    "Anchors",
    "DictionaryModel",
    "FitCache",
    "FitContext",
    "ModelFormat",
    "SparseCodingModel",
    "TrainingHistory",
    "load_model",
    "save_model",
]

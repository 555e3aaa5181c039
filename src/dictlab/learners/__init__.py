"""What produces a dictionary: DL-FISTA, Softplus-Adam, and LISTA (a learned encoder for a dictionary)."""

from dictlab.learners.dictionary_update import least_squares_dictionary, normalize_atoms, replace_atoms
from dictlab.learners.dl_fista import DLFista, DLFistaConfig, alternating_round
from dictlab.learners.lista import Lista, ListaConfig, default_weight_lr
from dictlab.learners.softplus_adam import AdaptiveLR, SoftplusAdam, SoftplusAdamConfig

__all__ = [
    "AdaptiveLR",
    "DLFista",
    "DLFistaConfig",
    "Lista",
    "ListaConfig",
    "SoftplusAdam",
    "SoftplusAdamConfig",
    "alternating_round",
    "default_weight_lr",
    "least_squares_dictionary",
    "normalize_atoms",
    "replace_atoms",
]

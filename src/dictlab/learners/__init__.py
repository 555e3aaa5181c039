"""What produces a dictionary: DL-FISTA, Softplus-Adam, the classical MOD, K-SVD and online learning, and LISTA
(a learned encoder for a dictionary)."""

from dictlab.learners.classical import ClassicalLearner, CodesStep
from dictlab.learners.dictionary_update import least_squares_dictionary, normalize_atoms, replace_atoms
from dictlab.learners.dl_fista import DLFista, DLFistaConfig, alternating_round
from dictlab.learners.ksvd import KSVD, KSVDConfig
from dictlab.learners.lista import Lista, ListaConfig, default_weight_lr
from dictlab.learners.mod import MOD, MODConfig
from dictlab.learners.online import OnlineDictionaryLearning, OnlineDLConfig
from dictlab.learners.softplus_adam import AdaptiveLR, SoftplusAdam, SoftplusAdamConfig

__all__ = [
    "KSVD",
    "MOD",
    "AdaptiveLR",
    "ClassicalLearner",
    "CodesStep",
    "DLFista",
    "DLFistaConfig",
    "KSVDConfig",
    "Lista",
    "ListaConfig",
    "MODConfig",
    "OnlineDLConfig",
    "OnlineDictionaryLearning",
    "SoftplusAdam",
    "SoftplusAdamConfig",
    "alternating_round",
    "default_weight_lr",
    "least_squares_dictionary",
    "normalize_atoms",
    "replace_atoms",
]

"""Reference points that are not dictionary learning: the supervised linear probe, PCA, and the untrained floor
(FISTA on a random dictionary)."""

from dictlab.baselines.pca import PCABaseline, PCAConfig
from dictlab.baselines.random_dictionary import RandomDictionary, RandomDictionaryConfig
from dictlab.baselines.ridge_probe import RidgeProbe, RidgeProbeConfig, ridge_loo

__all__ = [
    "PCABaseline",
    "PCAConfig",
    "RandomDictionary",
    "RandomDictionaryConfig",
    "RidgeProbe",
    "RidgeProbeConfig",
    "ridge_loo",
]

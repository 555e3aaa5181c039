"""Reference points that are not dictionary learning: the supervised linear probe and PCA."""

from dictlab.baselines.pca import PCABaseline, PCAConfig
from dictlab.baselines.ridge_probe import RidgeProbe, RidgeProbeConfig, ridge_loo

__all__ = ["PCABaseline", "PCAConfig", "RidgeProbe", "RidgeProbeConfig", "ridge_loo"]

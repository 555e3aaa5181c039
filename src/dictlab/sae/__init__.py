"""The sparse-autoencoder family and its one trainer.

``make_sae(SAEConfig(d_in=m, d_sae=p, architecture="topk", k=10)).fit(y, FitContext(seed=0))`` trains an
SAE; architectures (``SAE_ARCHITECTURES``): relu, topk, batchtopk, jumprelu, mp. Saved in SAELens format.
"""

from dictlab.sae.base import SAE_ARCHITECTURES, ForwardOutput, SparseAutoencoder, make_sae
from dictlab.sae.topk import BatchTopKSAE, TopKSAE
from dictlab.sae.config import SAEConfig, TrainConfig
from dictlab.sae.io import SAELENS_CONFIG_FILE, SAELENS_WEIGHTS_FILE, load_sae, save_sae
from dictlab.sae.jumprelu import JumpReLUSAE
from dictlab.sae.mp import MatchingPursuitSAE
from dictlab.sae.relu import ReLUSAE
from dictlab.sae.training import train_sae

__all__ = [
    "SAELENS_CONFIG_FILE",
    "SAELENS_WEIGHTS_FILE",
    "SAE_ARCHITECTURES",
    "BatchTopKSAE",
    "ForwardOutput",
    "JumpReLUSAE",
    "MatchingPursuitSAE",
    "ReLUSAE",
    "SAEConfig",
    "SparseAutoencoder",
    "TopKSAE",
    "TrainConfig",
    "load_sae",
    "make_sae",
    "save_sae",
    "train_sae",
]

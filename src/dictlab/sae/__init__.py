"""The sparse-autoencoder family and its one trainer.

``make_sae(TopKSAEConfig(d_in=m, d_sae=p, k=10)).fit(y, FitContext(seed=0))`` trains an SAE. Architectures
(``SAE_ARCHITECTURES``, each with its config class, ``sae_config_class(name)``): relu, topk, batchtopk,
jumprelu, mp, matryoshka_batchtopk, transcoder, crosscoder. Saved in SAELens format. A new architecture is one
module defining its config and SAE class, registered in ``SAE_ARCHITECTURES``, imported below.
"""

from dictlab.sae.base import (
    SAE_ARCHITECTURES,
    ForwardOutput,
    LossTerms,
    SparseAutoencoder,
    make_sae,
    parse_sae_config,
    sae_config_class,
)
from dictlab.sae.config import SAEConfig, TrainConfig
from dictlab.sae.crosscoder import Crosscoder, CrosscoderConfig
from dictlab.sae.io import SAELENS_CONFIG_FILE, SAELENS_WEIGHTS_FILE, load_sae, save_sae
from dictlab.sae.jumprelu import JumpReLUSAE, JumpReLUSAEConfig
from dictlab.sae.matryoshka import MatryoshkaBatchTopKSAE, MatryoshkaBatchTopKSAEConfig
from dictlab.sae.mp import MatchingPursuitSAE, MatchingPursuitSAEConfig
from dictlab.sae.relu import ReLUSAE, ReLUSAEConfig
from dictlab.sae.topk import BatchTopKSAE, BatchTopKSAEConfig, TopKSAE, TopKSAEConfig
from dictlab.sae.training import train_sae
from dictlab.sae.transcoder import Transcoder, TranscoderConfig

__all__ = [
    "SAELENS_CONFIG_FILE",
    "SAELENS_WEIGHTS_FILE",
    "SAE_ARCHITECTURES",
    "BatchTopKSAE",
    "BatchTopKSAEConfig",
    "Crosscoder",
    "CrosscoderConfig",
    "ForwardOutput",
    "JumpReLUSAE",
    "JumpReLUSAEConfig",
    "LossTerms",
    "MatchingPursuitSAE",
    "MatchingPursuitSAEConfig",
    "MatryoshkaBatchTopKSAE",
    "MatryoshkaBatchTopKSAEConfig",
    "ReLUSAE",
    "ReLUSAEConfig",
    "SAEConfig",
    "SparseAutoencoder",
    "TopKSAE",
    "TopKSAEConfig",
    "TrainConfig",
    "Transcoder",
    "TranscoderConfig",
    "load_sae",
    "make_sae",
    "parse_sae_config",
    "sae_config_class",
    "save_sae",
    "train_sae",
]

"""MP-SAE (Costa et al. 2025, Algorithm 1): matching pursuit unrolled for k steps on the tied decoder.

The encoder is the decoder: with D̃ = W_dec with rows rescaled to unit norm (p, m) and x = y − b_dec,
k steps of ``dictlab.inference.matching_pursuit`` give the codes Z (N, p) and ``Ŷ = Z D̃ + b_dec``.
Gradients reach W_dec and b_dec through the selected correlations; the loss is the MSE alone. There are no
encoder weights: the model holds and saves only ``W_dec`` and ``b_dec`` (the study kept unused ``W_e``,
``b_e``). The defaults are the paper's Algorithm 1 (atoms chosen by correlation, reselection allowed); the
study chose atoms by |correlation| (codes may be negative), each at most once per sample
(``MatchingPursuitSAEConfig.study``). SAELens has no MP architecture, so SAELens itself cannot load the
saved folder; dictlab can.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from dictlab.inference.matching_pursuit import matching_pursuit
from dictlab.sae.base import SAE_ARCHITECTURES, LossTerms, SparseAutoencoder
from dictlab.sae.config import SAEConfig, check_k_fits


class MatchingPursuitSAEConfig(SAEConfig):
    architecture: Literal["mp"] = Field("mp", description="Sparsity mechanism: k matching-pursuit steps.")
    k: int = Field(..., ge=1, description="Active latents per sample (matching-pursuit steps).")
    mp_absolute: bool = Field(
        False, description="Select atoms by |correlation| (the study) instead of correlation (the paper)."
    )
    mp_allow_reselect: bool = Field(
        True, description="An atom may be selected again for a sample (the paper; study: no)."
    )

    @model_validator(mode="after")
    def _k_fits(self) -> MatchingPursuitSAEConfig:
        check_k_fits(self.k, self.d_sae)
        return self

    @classmethod
    def study(cls, **fields: Any) -> MatchingPursuitSAEConfig:
        """The study's MP: atoms by |correlation|, each at most once per sample, under ``fields``."""
        return cls(**{"mp_absolute": True, "mp_allow_reselect": False, **fields})


@SAE_ARCHITECTURES.register("mp")
class MatchingPursuitSAE(SparseAutoencoder):
    architecture = "mp"
    config_class = MatchingPursuitSAEConfig
    description = "MP-SAE: k matching-pursuit steps on the tied decoder (Costa et al. 2025)"
    saelens_architecture = "mp"
    has_encoder = False
    cfg: MatchingPursuitSAEConfig

    def decoder_weight(self) -> torch.Tensor:
        return self.W_dec / torch.linalg.vector_norm(self.W_dec, dim=1, keepdim=True)

    def sparse_code(self, x: torch.Tensor) -> tuple[torch.Tensor, LossTerms]:
        cfg = self.cfg
        result = matching_pursuit(
            x, self.decoder_weight(), cfg.k, absolute=cfg.mp_absolute, allow_reselect=cfg.mp_allow_reselect
        )
        return result.codes, {}

"""ReLU SAE with an L1 penalty (Bricken et al. 2023; Cunningham et al. 2023); SAELens's "standard" SAE.

``Z = ReLU(pre)``; loss term ``l1_loss = λ · mean_b Σ_j Z_bj ‖W_dec_j‖``. The decoder-norm weight makes the
penalty invariant to trading code scale for decoder scale; with unit rows it is the study's plain ``λ‖Z‖₁``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from dictlab.sae.base import SAE_ARCHITECTURES, LossTerms, SparseAutoencoder
from dictlab.sae.config import SAEConfig


class ReLUSAEConfig(SAEConfig):
    architecture: Literal["relu"] = Field("relu", description="Sparsity mechanism: ReLU with an L1 penalty.")
    l1_coefficient: float = Field(3e-3, ge=0, description="Weight λ of the L1 penalty mean_b Σ_j z_j·‖W_dec_j‖.")

    @classmethod
    def study(cls, **fields: Any) -> ReLUSAEConfig:
        """The study's L1 weight, 1e-4, under ``fields``."""
        return cls(**{"l1_coefficient": 1e-4, **fields})


@SAE_ARCHITECTURES.register("relu")
class ReLUSAE(SparseAutoencoder):
    architecture = "relu"
    config_class = ReLUSAEConfig
    description = "SAE with ReLU and an L1 penalty"
    saelens_architecture = "standard"
    cfg: ReLUSAEConfig

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre)

    def loss_terms(self, y: torch.Tensor, reconstruction: torch.Tensor, codes: torch.Tensor) -> LossTerms:
        row_norms = torch.linalg.vector_norm(self.W_dec, dim=1)  # (p,)
        l1 = self.cfg.l1_coefficient * (codes @ row_norms).mean()
        return {**super().loss_terms(y, reconstruction, codes), "l1_loss": l1}

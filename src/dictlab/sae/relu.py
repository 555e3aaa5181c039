"""ReLU SAE with an L1 penalty (Bricken et al. 2023; Cunningham et al. 2023); SAELens's "standard" SAE.

``Z = ReLU(pre)``; penalty ``λ · mean_b Σ_j Z_bj ‖W_dec_j‖``. The decoder-norm weight makes the penalty
invariant to trading code scale for decoder scale; with unit rows it is the study's plain ``λ‖Z‖₁``.
"""

from __future__ import annotations

import torch

from dictlab.sae.base import SAE_ARCHITECTURES, SparseAutoencoder


@SAE_ARCHITECTURES.register("relu")
class ReLUSAE(SparseAutoencoder):
    architecture = "relu"
    saelens_architecture = "standard"

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre)

    def penalty(self, pre: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        row_norms = torch.linalg.vector_norm(self.W_dec, dim=1)  # (p,)
        return self.cfg.l1_coefficient * (codes @ row_norms).mean()

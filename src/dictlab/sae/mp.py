"""MP-SAE (Costa et al. 2025, Algorithm 1): matching pursuit unrolled for k steps on the tied decoder.

The encoder is the decoder: with D̃ = W_dec with rows rescaled to unit norm (p, m) and x = y − b_dec,
k steps of ``dictlab.inference.matching_pursuit`` give the codes Z (N, p) and ``Ŷ = Z D̃ + b_dec``.
Gradients reach W_dec and b_dec through the selected correlations. There are no encoder weights:
the model holds and saves only ``W_dec`` and ``b_dec`` (the study kept unused ``W_e``, ``b_e``).
Defaults follow the study: atoms chosen by |correlation| (codes may be negative), each at most once
per sample; ``mp_absolute=False, mp_allow_reselect=True`` is the paper's Algorithm 1. SAELens has no
MP architecture, so SAELens itself cannot load the saved folder; dictlab can.
"""

from __future__ import annotations

import torch

from dictlab.inference.matching_pursuit import matching_pursuit
from dictlab.sae.base import SAE_ARCHITECTURES, SparseAutoencoder


@SAE_ARCHITECTURES.register("mp")
class MatchingPursuitSAE(SparseAutoencoder):
    architecture = "mp"
    saelens_architecture = "mp"
    has_encoder = False

    def decoder_weight(self) -> torch.Tensor:
        return self.W_dec / torch.linalg.vector_norm(self.W_dec, dim=1, keepdim=True)

    def sparse_code(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        result = matching_pursuit(
            x,
            self.decoder_weight(),
            self.cfg.k,  # type: ignore[arg-type]
            absolute=self.cfg.mp_absolute,
            allow_reselect=self.cfg.mp_allow_reselect,
        )
        return result.codes, x.new_zeros(())

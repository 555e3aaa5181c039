"""MOD, the Method of Optimal Directions (Engan, Aase & Husøy, ICASSP 1999), with FISTA or OMP codes.

Alternates, for observations Y (N, m), codes Z (N, p) and a dictionary D (p, m) with unit-norm atoms as rows:

    Z ← codes step(Y, D)                       FISTA on ½‖Y − ZD‖² + λ‖Z‖₁ (warm-started from the last round's
                                               codes, 10 iterations), or OMP with k atoms
    D ← (ZᵀZ + εI)⁻¹ ZᵀY, rows normalised      the least-squares dictionary for these codes

In the papers' column form ``X ≈ A Zᵀ`` the update is ``A = X Z (ZᵀZ + εI)⁻¹ = Dᵀ``. Every ``upkeep_every``
rounds (until 80 % of them), atoms no code uses and the less-used of any near-parallel pair are replaced by the
normalised residuals of the worst-reconstructed samples (K-SVD's upkeep, ``dictionary_update``). The fit stops
when a round without replacement moves D by less than ``tol`` (relative Frobenius change).

This is the plain algorithm; DL-FISTA (``dl_fista``) is MOD with FISTA codes plus growth, momentum and λ
continuation, which it needs at large p.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from dictlab.inference import fista
from dictlab.learners.classical import CodesStep, RoundsConfig, RoundsLearner
from dictlab.learners.dictionary_update import least_squares_dictionary
from dictlab.models.base import MODEL_KINDS, FitContext


class MODConfig(RoundsConfig):
    """Hyperparameters of MOD: the codes step (``CodesStep``) and the rounds."""

    fista_iter: int = Field(
        10,
        ge=1,
        description="FISTA iterations per round, warm-started from the last codes (the first round runs "
        "encode_iter from zero).",
    )
    ridge: float = Field(1e-6, ge=0, description="ε in the dictionary update (ZᵀZ + εI)⁻¹ZᵀY.")


@MODEL_KINDS.register("mod")
class MOD(RoundsLearner):
    """The Method of Optimal Directions; see the module docstring (history and ``rounds_run``: ``RoundsLearner``)."""

    kind: ClassVar[str] = "mod"
    config_class: ClassVar[type[CodesStep]] = MODConfig
    settings: MODConfig

    def learn(
        self, x: torch.Tensor, dictionary: torch.Tensor, generator: torch.Generator, context: FitContext
    ) -> torch.Tensor:
        cfg = self.settings
        solver = cfg.solver()

        def one_round(r: int, d: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if cfg.coder == "fista":
                iterations = cfg.encode_iter if r == 0 else cfg.fista_iter
                z = fista(x, d, cfg.lam, max_iter=iterations, nonneg=cfg.nonneg, z0=z).codes
            else:
                z = solver.solve(x, d).codes
            return least_squares_dictionary(z, x, cfg.ridge), z

        return self.alternate(x, dictionary, one_round, generator, context)

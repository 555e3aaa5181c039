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
from tqdm.auto import tqdm

from dictlab.inference import fista
from dictlab.learners.classical import ClassicalLearner, CodesStep
from dictlab.learners.dictionary_update import (
    atoms_to_replace,
    duplicate_threshold,
    least_squares_dictionary,
    normalize_atoms,
    replace_atoms,
)
from dictlab.models.base import MODEL_KINDS, FitContext

# Atoms are replaced only before this fraction of ``max_rounds``, so the last rounds refine a fixed set.
POLISH_START = 0.8


class MODConfig(CodesStep):
    """Hyperparameters of MOD: the codes step (``CodesStep``) and the rounds."""

    fista_iter: int = Field(
        10, ge=1, description="FISTA iterations per round, warm-started from the last codes (the first round runs "
        "encode_iter from zero)."
    )
    max_rounds: int = Field(100, ge=1, description="Cap on alternating rounds (codes step + least-squares step).")
    ridge: float = Field(1e-6, ge=0, description="ε in the dictionary update (ZᵀZ + εI)⁻¹ZᵀY.")
    tol: float = Field(1e-4, ge=0, description="Stop when a round changes D by less than this (relative).")
    upkeep_every: int = Field(
        5, ge=0, description="Replace unused and duplicated atoms every this many rounds; 0: never."
    )
    log_every: int = Field(5, ge=1, description="Rounds between history entries (one is always added at the end).")


def mod_dictionary(codes: torch.Tensor, y: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """MOD's dictionary step: the least-squares fit ``(ZᵀZ + εI)⁻¹ZᵀY`` (p, m), unnormalised, and its unit rows."""
    fitted = least_squares_dictionary(codes, y, ridge)
    return fitted, normalize_atoms(fitted)[0]


@MODEL_KINDS.register("mod")
class MOD(ClassicalLearner):
    """The Method of Optimal Directions; see the module docstring.

    After ``fit``: ``history`` has one entry per logged round (step = round; change, replaced, mse_loss, l0,
    dead, and the matched dictionary quality with ``FitContext.ground_truth``); ``rounds_run``.
    """

    kind: ClassVar[str] = "mod"
    config_class: ClassVar[type[CodesStep]] = MODConfig
    settings: MODConfig

    def __init__(self, config: MODConfig) -> None:
        super().__init__(config)
        self.rounds_run = 0

    def learn(
        self, x: torch.Tensor, dictionary: torch.Tensor, generator: torch.Generator, context: FitContext
    ) -> torch.Tensor:
        cfg = self.settings
        d = dictionary
        z = x.new_zeros(x.shape[0], cfg.width)
        duplicate = duplicate_threshold(cfg.width, x.shape[1])
        solver = cfg.solver()
        for r in tqdm(range(cfg.max_rounds), desc="MOD", unit="round", disable=not context.progress):
            if cfg.coder == "fista":
                iterations = cfg.encode_iter if r == 0 else cfg.fista_iter
                z = fista(x, d, cfg.lam, max_iter=iterations, nonneg=cfg.nonneg, z0=z).codes
            else:
                z = solver.solve(x, d).codes
            fitted, new = mod_dictionary(z, x, cfg.ridge)
            replaced = 0
            if cfg.upkeep_every and (r + 1) % cfg.upkeep_every == 0 and r < POLISH_START * cfg.max_rounds:
                indices = atoms_to_replace(fitted, z, duplicate)
                replaced = int(indices.numel())
                if replaced:
                    fitted, z = replace_atoms(fitted, z, x, indices, generator)
                    new = normalize_atoms(fitted)[0]
            change = float(torch.linalg.vector_norm(new - d) / torch.linalg.vector_norm(d).clamp_min(1e-12))
            d = new
            done = change < cfg.tol and replaced == 0
            if (r + 1) % cfg.log_every == 0 or done or r == cfg.max_rounds - 1:
                self.log(r + 1, x, z, fitted, context, change=change, replaced=replaced)
            if done:
                break
        self.rounds_run = r + 1
        return d

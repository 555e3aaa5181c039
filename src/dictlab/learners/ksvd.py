"""K-SVD (Aharon, Elad & Bruckstein, IEEE TSP 2006): OMP codes with known k, then atom-by-atom rank-1 updates.

For observations Y (N, m), codes Z (N, p) and unit atoms D (p, m) as rows, one round is

    Z ← OMP(Y, D, k)                                  (exactly k atoms per sample)
    R = Y − Z D
    for j = 1..p:                                      (sequential: each update sees the previous ones)
        ω = {i : Z_ij ≠ 0}                             the samples that use atom j
        E = R_ω + Z_ωj d_j                             (|ω|, m): their residual without atom j
        (z, d) = argmin ‖E − z dᵀ‖_F, ‖d‖ = 1          exact: the top singular pair, z = σ₁u₁, d = v₁;
                                                       approximate (Rubinstein, Zibulevsky & Elad 2008):
                                                       one power step d ∝ Eᵀ Z_ωj, z = E d
        d_j ← d;  Z_ωj ← z;  R_ω ← E − z dᵀ

so the supports stay fixed within a round and ‖Y − ZD‖_F never grows during the atom sweep (each step is a
best rank-1 fit of its own residual on its own support). In the paper's column form ``Y = D X``, our D is
their Dᵀ and our Z their Xᵀ. Atoms no sample uses, and the less-used one of a near-parallel pair, are replaced
by the normalised residuals of the worst-reconstructed samples (§IV-E), every ``upkeep_every`` rounds until
80 % of them. The sign of each rank-1 pair is chosen so that its codes sum to ≥ 0 (deterministic, and
non-negative data keep mostly non-negative codes).

K-SVD is slow to leave its start when k/m is large: at the study's p = 100 point (k = 10, m = 47, 2,500
training samples, seed 0) the matched cosine is 0.62 after 50 rounds, 0.78 after 100 and 0.99 after 150
(OOD MCC 0.97 at 200 rounds, 34 s on one thread), hence the cap of 200 rounds; with the greedy codes of a
wrong dictionary, each round fixes only a few supports. On the paper's own problem (k = 3, m = 20) it takes
a few tens of rounds.

Vectorised as far as the algorithm allows: the supports of all atoms come from one sort of the (N, k) OMP
support per round, and each atom's update touches only its |ω| rows (O(N k m) per sweep); the loop over the
p atoms is the algorithm's own sequence.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator

from dictlab.learners.classical import CodesStep, RoundsConfig, RoundsLearner
from dictlab.models.base import MODEL_KINDS, FitContext


class KSVDConfig(RoundsConfig):
    """Hyperparameters of K-SVD. The codes step is OMP with ``n_nonzero`` atoms (required)."""

    coder: Literal["omp"] = Field("omp", description="K-SVD's codes step is OMP.")
    init: Literal["random", "samples"] = Field(
        "samples", description="Initial atoms: normalised training samples drawn at random (the paper's), or random."
    )
    update: Literal["exact", "approximate"] = Field(
        "exact", description="Atom update: the top singular pair of the residual (exact), or one power step."
    )
    max_rounds: int = Field(200, ge=1, description="Cap on rounds (OMP codes step + one sweep of atom updates).")
    upkeep_every: int = Field(
        1, ge=0, description="Replace unused and duplicated atoms every this many rounds; 0: never."
    )

    @model_validator(mode="after")
    def _check_k(self) -> KSVDConfig:
        if self.n_nonzero is None:
            raise ValueError("n_nonzero is required: K-SVD's OMP codes step selects a known number of atoms (k)")
        return self


def rank_one_update(
    residual: torch.Tensor, codes: torch.Tensor, *, exact: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best rank-1 fit ``z dᵀ`` of a residual E (n, m) with ‖d‖ = 1: returns (z (n,), d (m,)).

    exact: z = σ₁u₁, d = v₁ from the SVD of E — the minimiser of ‖E − z dᵀ‖_F. Approximate: one power step
    from the current codes (n,), d = Eᵀcodes / ‖Eᵀcodes‖, z = E d (never worse than the current pair when that
    pair has ‖d‖ = 1 and the codes are its least-squares codes). The sign is chosen so that Σ z ≥ 0.
    """
    if exact:
        u, s, vh = torch.linalg.svd(residual, full_matrices=False)
        d, z = vh[0], u[:, 0] * s[0]
    else:
        d = residual.T @ codes
        norm = torch.linalg.vector_norm(d)
        if float(norm) == 0:
            return torch.zeros_like(codes), torch.zeros_like(residual[0])
        d = d / norm
        z = residual @ d
    if float(z.sum()) < 0:
        z, d = -z, -d
    return z, d


def atom_supports(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples using each atom, from one sort: (rows (nnz,) sorted by atom, offsets (p + 1,)) so that the
    samples of atom j are ``rows[offsets[j]:offsets[j+1]]``."""
    rows, atoms = codes.nonzero(as_tuple=True)
    order = torch.argsort(atoms, stable=True)
    counts = torch.bincount(atoms, minlength=codes.shape[1])
    offsets = torch.zeros(codes.shape[1] + 1, dtype=torch.long, device=codes.device)
    offsets[1:] = torch.cumsum(counts, dim=0)
    return rows[order], offsets


def ksvd_sweep(
    y: torch.Tensor, dictionary: torch.Tensor, codes: torch.Tensor, *, exact: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """One K-SVD dictionary sweep (see the module docstring) on fixed supports: returns new (D (p, m), Z (N, p)).

    An atom no sample uses is left as it is (atom upkeep replaces it)."""
    d, z = dictionary.clone(), codes.clone()
    residual = y - z @ d
    rows, offsets = atom_supports(z)
    bounds = offsets.tolist()
    for j in range(d.shape[0]):
        start, stop = bounds[j], bounds[j + 1]
        if start == stop:
            continue
        omega = rows[start:stop]
        old = z[omega, j]
        error = residual[omega] + old.unsqueeze(1) * d[j]
        new_codes, atom = rank_one_update(error, old, exact=exact)
        d[j] = atom
        z[omega, j] = new_codes
        residual[omega] = error - new_codes.unsqueeze(1) * atom
    return d, z


@MODEL_KINDS.register("ksvd")
class KSVD(RoundsLearner):
    """K-SVD; see the module docstring. ``encode`` is OMP with ``n_nonzero`` atoms on the learned dictionary
    (history and ``rounds_run``: ``RoundsLearner``)."""

    kind: ClassVar[str] = "ksvd"
    config_class: ClassVar[type[CodesStep]] = KSVDConfig
    settings: KSVDConfig

    def learn(
        self, x: torch.Tensor, dictionary: torch.Tensor, generator: torch.Generator, context: FitContext
    ) -> torch.Tensor:
        solver, exact = self.settings.solver(), self.settings.update == "exact"

        def one_round(r: int, d: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return ksvd_sweep(x, d, solver.solve(x, d).codes, exact=exact)

        return self.alternate(x, dictionary, one_round, generator, context)

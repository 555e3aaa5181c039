"""Inference procedures as typed, serialisable configs, registered by name.

A solver turns observations (N, m) and a dictionary (p, m) into codes (N, p). Its hyperparameters
are a pydantic model, so a solver round-trips through JSON with the model that uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from pydantic import Field

from dictlab.config import Config, parse_config
from dictlab.inference.matching_pursuit import matching_pursuit
from dictlab.inference.orthogonal_matching_pursuit import orthogonal_matching_pursuit
from dictlab.inference.proximal_gradient import SolverResult, fista, ista
from dictlab.registry import Registry

SOLVERS: Registry[type[Solver]] = Registry("solver")


class Solver(Config):
    """Base class: ``solve(y, dictionary, z0=None) -> SolverResult``."""

    name: ClassVar[str]

    def solve(self, y: torch.Tensor, dictionary: torch.Tensor, z0: torch.Tensor | None = None) -> SolverResult:
        raise NotImplementedError

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.model_dump()}


def solver_from_config(config: Any) -> Solver:
    """Rebuild a solver from ``Solver.to_config()``; a malformed config, an unknown name or a bad field raises
    ValueError in one line."""
    if not isinstance(config, Mapping):
        raise ValueError(
            f"a solver config must be a table with a 'name' ({', '.join(SOLVERS.names())}) and its fields, "
            f"got {type(config).__name__} {config!r}"
        )
    params = dict(config)
    name = params.pop("name", None)
    if name is None:
        raise ValueError(f"a solver config needs a 'name'; allowed: {', '.join(SOLVERS.names())}")
    return parse_config(SOLVERS[name], params, where=f"solver {name}")


@SOLVERS.register("fista")
class FistaSolver(Solver):
    """FISTA on ½‖y − zD‖² + λ‖z‖₁ (z ≥ 0 when ``nonneg``). Defaults are the study's: λ=0.1, 100 iterations."""

    name: ClassVar[str] = "fista"
    lam: float = Field(0.1, ge=0, description="L1 weight λ.")
    max_iter: int = Field(100, ge=0, description="Iteration cap.")
    tol: float | None = Field(None, gt=0, description="Relative-change tolerance; None: run max_iter.")
    nonneg: bool = Field(True, description="Constrain codes to be non-negative.")

    def solve(self, y: torch.Tensor, dictionary: torch.Tensor, z0: torch.Tensor | None = None) -> SolverResult:
        return fista(y, dictionary, self.lam, max_iter=self.max_iter, tol=self.tol, nonneg=self.nonneg, z0=z0)


@SOLVERS.register("ista")
class IstaSolver(FistaSolver):
    """ISTA: the same problem as FISTA without momentum."""

    name: ClassVar[str] = "ista"

    def solve(self, y: torch.Tensor, dictionary: torch.Tensor, z0: torch.Tensor | None = None) -> SolverResult:
        return ista(y, dictionary, self.lam, max_iter=self.max_iter, tol=self.tol, nonneg=self.nonneg, z0=z0)


@SOLVERS.register("mp")
class MatchingPursuitSolver(Solver):
    """Matching pursuit with unit-norm atoms (see ``matching_pursuit``); ``z0`` is ignored.

    Defaults are the study's MP-SAE variant: select by |correlation|, each atom at most once per sample.
    """

    name: ClassVar[str] = "mp"
    n_steps: int = Field(..., ge=0, description="Greedy steps per sample (the study uses the true sparsity k).")
    tol: float | None = Field(None, gt=0, description="Stop a sample once ||r|| <= tol*||y||; None: run n_steps.")
    absolute: bool = Field(True, description="Select the atom with the largest |correlation| (else largest signed).")
    allow_reselect: bool = Field(False, description="Allow an atom to be selected again for the same sample.")

    def solve(self, y: torch.Tensor, dictionary: torch.Tensor, z0: torch.Tensor | None = None) -> SolverResult:
        return matching_pursuit(
            y, dictionary, self.n_steps, tol=self.tol, absolute=self.absolute, allow_reselect=self.allow_reselect
        )


@SOLVERS.register("omp")
class OmpSolver(Solver):
    """Orthogonal matching pursuit (see ``orthogonal_matching_pursuit``); ``z0`` is ignored."""

    name: ClassVar[str] = "omp"
    n_nonzero: int = Field(..., ge=0, description="Atoms selected per sample (at most the number of atoms).")
    tol: float | None = Field(None, gt=0, description="Stop a sample once ||r|| <= tol*||y||; None: select n_nonzero.")

    def solve(self, y: torch.Tensor, dictionary: torch.Tensor, z0: torch.Tensor | None = None) -> SolverResult:
        return orthogonal_matching_pursuit(y, dictionary, self.n_nonzero, tol=self.tol)

"""Sparse coding with a fixed dictionary (atoms as rows): ISTA, FISTA, MP, OMP, least squares on a support."""

from dictlab.inference.least_squares import least_squares_on_support
from dictlab.inference.matching_pursuit import matching_pursuit
from dictlab.inference.orthogonal_matching_pursuit import orthogonal_matching_pursuit
from dictlab.inference.proximal_gradient import SolverResult, fista, ista, proximal_gradient
from dictlab.inference.solvers import (
    SOLVERS,
    FistaSolver,
    IstaSolver,
    MatchingPursuitSolver,
    OmpSolver,
    Solver,
    solver_from_config,
)
from dictlab.inference.step_size import lipschitz_constant

__all__ = [
    "SOLVERS",
    "FistaSolver",
    "IstaSolver",
    "MatchingPursuitSolver",
    "OmpSolver",
    "Solver",
    "SolverResult",
    "fista",
    "ista",
    "least_squares_on_support",
    "lipschitz_constant",
    "matching_pursuit",
    "orthogonal_matching_pursuit",
    "proximal_gradient",
    "solver_from_config",
]

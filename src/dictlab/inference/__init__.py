"""Sparse coding with a fixed dictionary (atoms as rows): ISTA, FISTA, MP, OMP, least squares on a support."""

from dictlab.inference.proximal_gradient import SolverResult, fista, ista, proximal_gradient
from dictlab.inference.solvers import SOLVERS, FistaSolver, IstaSolver, Solver, solver_from_config
from dictlab.inference.step_size import lipschitz_constant

__all__ = [
    "SOLVERS",
    "FistaSolver",
    "IstaSolver",
    "Solver",
    "SolverResult",
    "fista",
    "ista",
    "lipschitz_constant",
    "proximal_gradient",
    "solver_from_config",
]

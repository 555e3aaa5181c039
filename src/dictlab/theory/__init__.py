"""Identifiability theory and its experiments: the ℓ1 phase transition (statistical dimension of the ℓ1 descent
cone) and empirical Donoho–Tanner phase diagrams of coders given the true dictionary.

Layer: above ``metrics`` (it may use registry/config/validation, data, inference and metrics), below everything
that draws or runs experiments (``report``, ``cli``)."""

from dictlab.theory.l1_curve import (
    gaussian_excess_second_moment,
    l1_critical_sparsity,
    l1_phase_curve,
    l1_statistical_dimension,
    optimal_threshold,
)
from dictlab.theory.phase_transition import (
    PHASE_SOLVERS,
    PhaseDiagram,
    PhaseSolver,
    default_grid,
    phase_diagram,
)

__all__ = [
    "PHASE_SOLVERS",
    "PhaseDiagram",
    "PhaseSolver",
    "default_grid",
    "gaussian_excess_second_moment",
    "l1_critical_sparsity",
    "l1_phase_curve",
    "l1_statistical_dimension",
    "optimal_threshold",
    "phase_diagram",
]

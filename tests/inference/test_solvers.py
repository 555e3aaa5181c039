"""Solver configs: registry, validation, JSON round trip, and persistence inside a SparseCodingModel."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError

from dictlab.data import random_unit_dictionary
from dictlab.inference import (
    SOLVERS,
    FistaSolver,
    IstaSolver,
    MatchingPursuitSolver,
    OmpSolver,
    matching_pursuit,
    orthogonal_matching_pursuit,
    solver_from_config,
)
from dictlab.models import SparseCodingModel, load_model, save_model

SOLVER_EXAMPLES = [
    FistaSolver(lam=0.05, max_iter=30, nonneg=False),
    IstaSolver(lam=0.2, max_iter=40, tol=1e-4),
    MatchingPursuitSolver(n_steps=4),
    MatchingPursuitSolver(n_steps=6, tol=0.1, absolute=False, allow_reselect=True),
    OmpSolver(n_nonzero=3),
    OmpSolver(n_nonzero=5, tol=1e-3),
]


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    d = random_unit_dictionary(40, 16, g)
    y = torch.randn(25, 16, generator=g)
    return y, d


def test_registry_names():
    assert {"fista", "ista", "mp", "omp"} <= set(SOLVERS.names())
    assert SOLVERS["mp"] is MatchingPursuitSolver and SOLVERS["omp"] is OmpSolver


@pytest.mark.parametrize("solver", SOLVER_EXAMPLES, ids=lambda s: s.name)
def test_config_round_trip_through_json(solver, data):
    y, d = data
    config = json.loads(json.dumps(solver.to_config()))
    rebuilt = solver_from_config(config)
    assert rebuilt == solver and type(rebuilt) is type(solver)
    assert torch.equal(rebuilt.solve(y, d).codes, solver.solve(y, d).codes)


@pytest.mark.parametrize("solver", SOLVER_EXAMPLES, ids=lambda s: s.name)
def test_sparse_coding_model_save_load_gives_identical_codes(solver, data, tmp_path):
    y, d = data
    offset = torch.linspace(-0.1, 0.1, d.shape[1])
    model = SparseCodingModel(d, solver, offset)
    loaded = load_model(save_model(model, tmp_path / solver.name))
    assert isinstance(loaded, SparseCodingModel) and loaded.solver == solver
    assert torch.equal(loaded.encode(y), model.encode(y))


def test_solvers_call_the_functions_with_their_fields(data):
    y, d = data
    mp = MatchingPursuitSolver(n_steps=5).solve(y, d).codes
    # default is the study's variant: |correlation|, no re-selection
    assert torch.equal(mp, matching_pursuit(y, d, 5, absolute=True, allow_reselect=False).codes)
    assert bool(((mp != 0).sum(dim=1) == 5).all())
    omp = OmpSolver(n_nonzero=4, tol=1e-2).solve(y, d).codes
    assert torch.equal(omp, orthogonal_matching_pursuit(y, d, 4, tol=1e-2).codes)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"name": "mp", "n_steps": -1}, "n_steps"),
        ({"name": "mp"}, "n_steps"),
        ({"name": "mp", "n_steps": 3, "tol": 0.0}, "tol"),
        ({"name": "mp", "n_steps": 3, "bogus": 1}, "bogus"),
        ({"name": "omp", "n_nonzero": -2}, "n_nonzero"),
        ({"name": "omp", "n_nonzero": 2, "tol": -1}, "tol"),
        ({"name": "lars"}, "unknown solver 'lars'"),
        ({"n_steps": 3}, "needs a 'name'"),
        ({"name": "fista", "lam": float("inf")}, "lam=inf: Input should be a finite number"),
        ({"name": "fista", "lam": float("nan")}, "lam=nan: Input should be a finite number"),
        ({"name": "fista", "max_iter": True}, "max_iter=True: Input should be a valid integer"),
        ({"name": "ista", "max_iter": 2.5}, "max_iter=2.5: Input should be a valid integer"),
    ],
)
def test_bad_configs_name_the_field(config, field):
    with pytest.raises(ValueError, match=field):
        solver_from_config(config)


def test_an_infinite_lambda_is_refused_in_the_constructor_and_in_fista_itself(data):
    from dictlab.inference import fista

    y, d = data
    with pytest.raises(ValidationError, match="lam\n  Input should be a finite number"):
        FistaSolver(lam=float("inf"))
    with pytest.raises(ValueError, match="lam must be a finite number >= 0, got inf"):
        fista(y, d, float("inf"))


def test_configs_are_frozen():
    with pytest.raises(ValidationError):
        MatchingPursuitSolver(n_steps=3).n_steps = 4  # type: ignore[misc]

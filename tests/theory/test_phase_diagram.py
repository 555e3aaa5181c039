"""Empirical phase diagrams with the true dictionary: FISTA's 50 % contour follows the ℓ1 curve, the greedy
coders' lie lower; cells, seeding, debiasing and input checks."""

from __future__ import annotations

import pytest
import torch

from dictlab.theory import PHASE_SOLVERS, default_grid, l1_phase_curve, phase_diagram
from dictlab.theory.phase_transition import cell_sizes, debiased, recovered, sample_problem

DELTAS = (0.2, 0.35, 0.5, 0.65, 0.8)
# ρ from 0.1 to above the curve at the largest δ (0.81 non-negative, 0.57 signed): failing cells cost the most
RHOS = {True: tuple(0.1 * i for i in range(1, 10)), False: tuple(0.1 * i for i in range(1, 8))}
# Mean |ρ₅₀ − ρ_ℓ1(δ)| over DELTAS, p = 80, 12 trials per cell. Measured over seeds 0–5: 0.024–0.049 for
# non-negative codes, 0.014–0.020 for signed ones. The ℓ1 curve is the p → ∞ limit: at p = 80 the transition is
# smeared over a band of width ~1/√p in ρ, k = round(ρm) moves each cell off its nominal ρ, and 12 trials per
# cell put a binomial error of up to ±0.14 on each success rate — hence 0.08, not 0.02. The two curves lie 0.08–0.17
# apart at these δ, so the test also asks that each diagram be closer to its own curve than to the other one.
CONTOUR_TOLERANCE = 0.08


@pytest.mark.parametrize("nonneg", [True, False], ids=["nonneg", "signed"])
def test_fista_contour_follows_the_l1_curve(nonneg):
    diagram = phase_diagram("fista", p=80, deltas=DELTAS, rhos=RHOS[nonneg], trials=12, nonneg=nonneg, seed=0)
    rho50, censored = diagram.contour()
    assert not bool(censored.any())
    distance = diagram.contour_distance()
    assert distance <= CONTOUR_TOLERANCE, (rho50, diagram.theory())
    other = l1_phase_curve(torch.tensor(DELTAS, dtype=torch.float64), nonneg=not nonneg)
    assert distance < float((rho50 - other).abs().mean())
    # well below the curve ℓ1 always succeeds, above it it fails (measured at seeds 0–3: at most 2 of 12 trials)
    assert float(diagram.success[0].min()) == 1.0 and float(diagram.success[-1].max()) <= 0.25


def test_greedy_coders_fail_above_their_lower_boundary():
    """OMP and MP, told k, recover sparse enough codes but fail far below the (non-negative) ℓ1 curve."""
    rhos = (0.1, 0.5)
    for name in ("omp", "mp"):
        diagram = phase_diagram(name, p=60, deltas=(0.5, 0.8), rhos=rhos, trials=12, seed=1)
        assert float(diagram.success[0].min()) >= 0.75
        assert float(diagram.success[1].max()) <= 0.25  # ρ = 0.5 < ρ_ℓ1(δ) = 0.56 and 0.81: ℓ1 would succeed


def test_cells_grid_and_result_fields():
    diagram = phase_diagram("omp", p=40, deltas=(0.25, 0.5), rhos=(0.1, 0.3, 0.6), trials=5, seed=3)
    assert diagram.success.shape == (3, 2) and diagram.trials == 5
    assert diagram.input_dims == (10, 20)
    assert diagram.sparsities == ((1, 2), (3, 6), (6, 12))  # round(ρm), at least 1
    assert cell_sizes(100, 0.05, 0.05) == (5, 1)
    data = diagram.to_json()
    assert data["success"] == diagram.success.tolist() and len(data["contour_50"]) == 2
    assert default_grid(4) == (0.125, 0.375, 0.625, 0.875)


def test_seeded_and_solver_independent_data():
    """Every cell's data come from (seed, cell): two solvers see the same problems, a rerun the same numbers."""
    first = phase_diagram("omp", p=30, deltas=(0.5,), rhos=(0.2, 0.4), trials=8, seed=5)
    again = phase_diagram("omp", p=30, deltas=(0.5,), rhos=(0.2, 0.4), trials=8, seed=5)
    torch.testing.assert_close(first.success, again.success, rtol=0, atol=0)
    seen = []

    def spy(y, dictionary, k, nonneg):
        seen.append(y.clone())
        return PHASE_SOLVERS["omp"](y, dictionary, k, nonneg)

    custom = phase_diagram(spy, p=30, deltas=(0.5,), rhos=(0.2, 0.4), trials=8, seed=5)
    assert custom.solver == "spy" and len(seen) == 2 and seen[0].shape == (8, 15)
    torch.testing.assert_close(custom.success, first.success, rtol=0, atol=0)


def test_debiasing_removes_the_lasso_shrinkage_only():
    """Codes with the true support but shrunk magnitudes (FISTA's λ-bias) count as recovered after debiasing
    and not before; codes on a wrong support count as failures either way."""
    generator = torch.Generator().manual_seed(0)
    dictionary, codes, y = sample_problem(50, 25, 4, 6, True, generator)
    truth = codes.to_dense()
    shrunk = (truth - 0.05).clamp_min(0) * (truth > 0)
    # least squares with the ridge 1e-8 of least_squares_on_support: exact to ~1e-7 here
    torch.testing.assert_close(debiased(shrunk, y, dictionary), truth, rtol=0, atol=1e-6)
    assert bool(recovered(shrunk, truth, y, dictionary, 1e-3, debias=True).all())
    assert not bool(recovered(shrunk, truth, y, dictionary, 1e-3, debias=False).any())
    wrong = torch.roll(truth, 1, dims=1)  # the right magnitudes on the wrong atoms
    assert not bool(recovered(wrong, truth, y, dictionary, 1e-3, debias=True).any())

    def zeros(y, dictionary, k, nonneg):
        return dictionary.new_zeros(y.shape[0], dictionary.shape[0])

    assert float(phase_diagram(zeros, p=20, deltas=(0.5,), rhos=(0.2,), trials=3).success.max()) == 0.0


def test_matching_pursuit_without_debiasing_never_recovers():
    """MP's k-step codes keep a residual; judged raw (debias=False) they fail where debiased OMP succeeds."""
    raw = phase_diagram("mp", p=40, deltas=(0.5,), rhos=(0.15,), trials=10, seed=2, debias=False)
    omp = phase_diagram("omp", p=40, deltas=(0.5,), rhos=(0.15,), trials=10, seed=2)
    assert float(raw.success.max()) <= 0.1 and float(omp.success.min()) >= 0.8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": 1}, "p must be >= 2, got 1"),
        ({"trials": 0}, "trials must be"),
        ({"deltas": (0.0,)}, r"deltas must lie in \(0, 1\]"),
        ({"rhos": ()}, "rhos must hold at least one value"),
        ({"tol": 0.0}, "tol must be > 0"),
        ({"solver": "lasso"}, "unknown phase-diagram solver 'lasso'; allowed: fista, mp, omp"),
    ],
)
def test_bad_arguments(kwargs, message):
    settings = {"solver": "omp", "p": 20, "deltas": (0.5,), "rhos": (0.2,), "trials": 2, **kwargs}
    solver = settings.pop("solver")
    with pytest.raises(ValueError, match=message):
        phase_diagram(solver, **settings)

"""ISTA/FISTA reach the Lasso optimum: sklearn reference, KKT conditions, warm starts, both gradient paths."""

from __future__ import annotations

import pytest
import torch
from sklearn.linear_model import Lasso

from dictlab.inference import fista, ista, lipschitz_constant

LAM = 0.1


def _problem(p: int = 30, m: int = 20, n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(p, m, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    z = torch.randn(n, p, generator=g, dtype=torch.float64) * (torch.rand(n, p, generator=g) < 0.15)
    y = z.abs() @ d + 0.05 * torch.randn(n, m, generator=g, dtype=torch.float64)
    return y, d


def _objective(y: torch.Tensor, d: torch.Tensor, z: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-sample ½‖y − zD‖² + λ‖z‖₁, (N,)."""
    return 0.5 * (y - z @ d).square().sum(dim=1) + lam * z.abs().sum(dim=1)


@pytest.fixture(scope="module")
def problem() -> tuple[torch.Tensor, torch.Tensor]:
    return _problem()


@pytest.fixture(scope="module")
def optimum(problem):
    y, d = problem
    return {nonneg: fista(y, d, LAM, max_iter=20000, nonneg=nonneg).codes for nonneg in (False, True)}


@pytest.mark.parametrize("nonneg", [False, True])
def test_fista_matches_sklearn_lasso(problem, optimum, nonneg):
    y, d = problem
    m = d.shape[1]
    # sklearn minimises 1/(2·n_samples)‖y − Xw‖² + α‖w‖₁ with X (n_samples, features) = Dᵀ, so α = λ/m.
    lasso = Lasso(alpha=LAM / m, fit_intercept=False, positive=nonneg, tol=1e-14, max_iter=200_000)
    for i in range(4):
        reference = lasso.fit(d.T.numpy(), y[i].numpy()).coef_
        torch.testing.assert_close(optimum[nonneg][i], torch.from_numpy(reference), atol=1e-7, rtol=0)


def test_signed_optimum_satisfies_kkt(problem, optimum):
    y, d = problem
    z = optimum[False]
    gradient = (z @ d - y) @ d.T  # gradient of the smooth part
    on = z != 0
    assert on.any() and (~on).any()
    assert bool((gradient[~on].abs() <= LAM + 1e-9).all())
    torch.testing.assert_close(gradient[on], -LAM * z[on].sign(), atol=1e-9, rtol=0)


def test_nonneg_optimum_satisfies_kkt(problem, optimum):
    y, d = problem
    z = optimum[True]
    gradient = (z @ d - y) @ d.T
    on = z > 0
    assert bool((z >= 0).all()) and on.any() and (~on).any()
    torch.testing.assert_close(gradient[on], torch.full_like(gradient[on], -LAM), atol=1e-9, rtol=0)
    assert bool((gradient[~on] >= -LAM - 1e-9).all())


def test_fista_objective_below_ista_after_same_iterations(problem, optimum):
    y, d = problem
    best = _objective(y, d, optimum[False], LAM).sum()
    for t in (20, 50, 200):
        f = _objective(y, d, fista(y, d, LAM, max_iter=t).codes, LAM).sum()
        i = _objective(y, d, ista(y, d, LAM, max_iter=t).codes, LAM).sum()
        assert best - 1e-12 <= f <= i


def test_tol_stops_early_and_reports_convergence(problem, optimum):
    y, d = problem
    result = fista(y, d, LAM, max_iter=20000, tol=1e-8)
    assert result.converged and result.n_iter < 20000 and result.n_iter % 10 == 0
    torch.testing.assert_close(result.codes, optimum[False], atol=1e-4, rtol=0)
    capped = fista(y, d, LAM, max_iter=3, tol=1e-12)
    assert not capped.converged and capped.n_iter == 3


@pytest.mark.parametrize("nonneg", [False, True])
def test_one_step_from_zero_is_the_thresholded_correlation(problem, nonneg):
    # From z = 0 one step is prox(y Dᵀ / L): soft thresholding at λ/L (one-sided when nonneg).
    y, d = problem
    lipschitz = lipschitz_constant(d)
    v = y @ d.T / lipschitz
    expected = (v - LAM / lipschitz).clamp_min(0) if nonneg else v.sign() * (v.abs() - LAM / lipschitz).clamp_min(0)
    for solver in (fista, ista):
        codes = solver(y, d, LAM, max_iter=1, nonneg=nonneg, lipschitz=lipschitz).codes
        torch.testing.assert_close(codes, expected, atol=1e-14, rtol=0)


@pytest.mark.parametrize("solver", [fista, ista])
def test_warm_start_at_optimum_stays(problem, optimum, solver):
    y, d = problem
    result = solver(y, d, LAM, max_iter=50, z0=optimum[False])
    torch.testing.assert_close(result.codes, optimum[False], atol=1e-9, rtol=0)


def test_gram_and_factorised_paths_agree(problem):
    y, d = problem
    p, m = d.shape
    assert p < 2 * m  # Gram path
    # Zero atoms change neither the objective nor L, but p ≥ 2m switches to the factorised gradient.
    padded = torch.cat([d, torch.zeros(2 * m - p, m, dtype=d.dtype)])
    lipschitz = lipschitz_constant(d)
    gram = fista(y, d, LAM, max_iter=150, lipschitz=lipschitz).codes
    factorised = fista(y, padded, LAM, max_iter=150, lipschitz=lipschitz).codes
    torch.testing.assert_close(factorised[:, :p], gram, atol=1e-12, rtol=0)
    assert bool((factorised[:, p:] == 0).all())


def test_float32_follows_input_dtype(problem, optimum):
    y, d = problem
    codes = fista(y.float(), d.float(), LAM, max_iter=2000).codes
    assert codes.dtype == torch.float32
    torch.testing.assert_close(codes.double(), optimum[False], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"y": "nan"}, "y"),
        ({"y": "1d"}, "y"),
        ({"dictionary": "cols"}, "dictionary"),
        ({"lam": -0.1}, "lam"),
        ({"z0": "shape"}, "z0"),
        ({"tol": -1.0}, "tol"),
        ({"max_iter": -1}, "max_iter"),
    ],
)
def test_bad_input_names_the_field(problem, change, field):
    y, d = problem
    args = {"y": y, "dictionary": d, "lam": LAM}
    kwargs: dict[str, object] = {}
    if change.get("y") == "nan":
        args["y"] = y.clone()
        args["y"][0, 0] = float("nan")
    elif change.get("y") == "1d":
        args["y"] = y[0]
    elif change.get("dictionary") == "cols":
        args["dictionary"] = d[:, :-1]
    elif "lam" in change:
        args["lam"] = change["lam"]
    elif "z0" in change:
        kwargs["z0"] = torch.zeros(y.shape[0], d.shape[0] + 1, dtype=y.dtype)
    else:
        kwargs.update(change)
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        fista(args["y"], args["dictionary"], args["lam"], **kwargs)


@pytest.mark.parametrize(("p", "m"), [(30, 20), (20, 30), (200, 10)])
def test_lipschitz_constant_is_squared_spectral_norm(p, m):
    g = torch.Generator().manual_seed(p + m)
    d = torch.randn(p, m, generator=g)
    exact = float(torch.linalg.matrix_norm(d.double(), 2) ** 2)
    estimate = lipschitz_constant(d)
    assert abs(estimate - exact) <= 1e-3 * exact
    assert estimate >= exact  # never an underestimate: a too-large step can diverge

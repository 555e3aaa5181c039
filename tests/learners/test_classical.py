"""MOD, K-SVD and online dictionary learning: their steps against float64 references and optimality
conditions, recovery on the K-SVD paper's synthetic problem, persistence, and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from dictlab.data import random_unit_dictionary
from dictlab.inference import fista
from dictlab.learners import KSVD, MOD, KSVDConfig, MODConfig, OnlineDictionaryLearning, OnlineDLConfig
from dictlab.learners.dictionary_update import least_squares_dictionary, normalize_atoms
from dictlab.learners.ksvd import atom_supports, ksvd_sweep, rank_one_update
from dictlab.learners.online import forgetting, surrogate, update_dictionary
from dictlab.methods import Problem, build_method
from dictlab.models import FitContext, load_model, save_model


def k_sparse(n: int, p: int, k: int, generator: torch.Generator, *, nonneg: bool = True) -> torch.Tensor:
    """(n, p) float64 codes with exactly k non-zeros per row, magnitudes in [1, 2] (random signs unless nonneg)."""
    support = torch.rand(n, p, generator=generator, dtype=torch.float64).argsort(dim=1)[:, :k]
    values = 1 + torch.rand(n, k, generator=generator, dtype=torch.float64)
    if not nonneg:
        values *= torch.randint(0, 2, (n, k), generator=generator).double() * 2 - 1
    return torch.zeros(n, p, dtype=torch.float64).scatter_(1, support, values)


def matched_cosines(learned: torch.Tensor, true: torch.Tensor) -> np.ndarray:
    a = learned.double() / learned.double().norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = true.double() / true.double().norm(dim=1, keepdim=True)
    cosine = (b @ a.T).abs().numpy()
    rows, cols = linear_sum_assignment(cosine, maximize=True)
    return cosine[rows, cols]


def lasso_objective(y: torch.Tensor, z: torch.Tensor, d: torch.Tensor, lam: float) -> float:
    return float(0.5 * (y - z @ d).pow(2).sum() + lam * z.abs().sum())


# --- K-SVD --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_exact_rank_one_update_is_the_best_rank_one_fit_of_the_residual(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    residual = torch.randn(7 + seed, 5, generator=g, dtype=torch.float64)
    z, d = rank_one_update(residual, torch.randn(residual.shape[0], generator=g, dtype=torch.float64))
    singular = torch.linalg.svdvals(residual)
    # Eckart–Young: the best rank-1 error is the energy of the other singular values
    error = float(torch.linalg.norm(residual - torch.outer(z, d)) ** 2)
    assert error == pytest.approx(float(singular[1:].square().sum()), rel=1e-10)
    assert float(torch.linalg.vector_norm(d)) == pytest.approx(1.0, abs=1e-12)
    assert float(z.sum()) >= 0
    for _ in range(20):  # no other unit direction with its least-squares codes does better
        other = torch.randn(5, generator=g, dtype=torch.float64)
        other /= other.norm()
        assert float(torch.linalg.norm(residual - torch.outer(residual @ other, other)) ** 2) >= error - 1e-12


def test_approximate_rank_one_update_never_worsens_the_current_pair() -> None:
    g = torch.Generator().manual_seed(0)
    residual = torch.randn(12, 6, generator=g, dtype=torch.float64)
    d0 = torch.randn(6, generator=g, dtype=torch.float64)
    d0 /= d0.norm()
    z0 = residual @ d0  # the least-squares codes of d0
    z, d = rank_one_update(residual, z0, exact=False)
    before = float(torch.linalg.norm(residual - torch.outer(z0, d0)))
    assert float(torch.linalg.norm(residual - torch.outer(z, d))) <= before + 1e-12


def test_atom_supports_list_the_samples_of_every_atom() -> None:
    codes = k_sparse(40, 9, 3, torch.Generator().manual_seed(1))
    rows, offsets = atom_supports(codes)
    for j in range(9):
        expected = torch.nonzero(codes[:, j]).squeeze(1)
        assert torch.equal(torch.sort(rows[offsets[j] : offsets[j + 1]]).values, expected)


@pytest.mark.parametrize("exact", [True, False])
def test_ksvd_sweep_never_increases_the_error_and_keeps_the_supports(exact: bool) -> None:
    g = torch.Generator().manual_seed(2)
    truth = random_unit_dictionary(30, 12, g, torch.float64)
    y = k_sparse(300, 30, 3, g) @ truth + 0.01 * torch.randn(300, 12, generator=g, dtype=torch.float64)
    d = random_unit_dictionary(30, 12, g, torch.float64)
    codes = torch.linalg.lstsq(d.T, y.T).solution.T * (k_sparse(300, 30, 3, g) != 0)  # some codes on some supports
    new_d, new_codes = ksvd_sweep(y, d, codes, exact=exact)
    assert float((y - new_codes @ new_d).norm()) <= float((y - codes @ d).norm()) + 1e-10
    assert torch.equal(new_codes != 0, codes != 0) or bool(((new_codes != 0) <= (codes != 0)).all())
    used = (codes != 0).any(dim=0)
    assert torch.allclose(new_d[used].norm(dim=1), torch.ones(int(used.sum()), dtype=torch.float64))


def test_ksvd_recovers_the_dictionary_of_the_papers_synthetic_experiment() -> None:
    """Aharon et al. 2006 §V-A: a random 20 × 50 dictionary, 1500 signals of 3 atoms; K-SVD finds most atoms
    (the paper: 96% with 1 − |cos| < 0.01 noise-free, in 80 rounds). Here 40 rounds, float64."""
    g = torch.Generator().manual_seed(3)
    truth = random_unit_dictionary(50, 20, g, torch.float64)
    y = k_sparse(1500, 50, 3, g, nonneg=False) @ truth
    model = KSVD(KSVDConfig(width=50, n_nonzero=3, max_rounds=40)).fit(y, FitContext(seed=0))
    found = matched_cosines(model.dictionary, truth) > 0.99
    assert found.mean() >= 0.9, f"K-SVD found {found.mean():.2f} of the atoms"
    assert model.rounds_run <= 40


# --- MOD ---------------------------------------------------------------------------------------------------


def test_mod_step_is_the_closed_form_least_squares_dictionary() -> None:
    g = torch.Generator().manual_seed(4)
    codes = k_sparse(200, 15, 4, g)
    y = torch.randn(200, 10, generator=g, dtype=torch.float64)
    fitted = least_squares_dictionary(codes, y, ridge=0.0)  # MOD's step
    unit = normalize_atoms(fitted)[0]
    reference = torch.linalg.solve(codes.T @ codes, codes.T @ y)  # D = (ZᵀZ)⁻¹ZᵀY
    assert torch.allclose(fitted, reference, rtol=1e-9, atol=1e-10)
    assert torch.allclose(unit, reference / reference.norm(dim=1, keepdim=True), atol=1e-10)
    # its gradient vanishes: Zᵀ(ZD − Y) = 0
    assert float((codes.T @ (codes @ fitted - y)).abs().max()) < 1e-8


@pytest.mark.parametrize("coder", ["fista", "omp"])
def test_mod_recovers_a_small_dictionary(coder: str) -> None:
    g = torch.Generator().manual_seed(5)
    truth = random_unit_dictionary(20, 15, g)
    y = (k_sparse(1000, 20, 2, g) @ truth.double()).float()
    config = MODConfig(width=20, coder=coder, n_nonzero=2 if coder == "omp" else None, max_rounds=60)
    model = MOD(config).fit(y, FitContext(seed=0))
    found = matched_cosines(model.dictionary, truth) > 0.99
    assert found.mean() >= 0.9, f"MOD ({coder}) found {found.mean():.2f} of the atoms"  # greedy codes: 18 of 20
    assert model.dictionary.dtype == torch.float32


# --- online dictionary learning --------------------------------------------------------------------------


def test_online_atom_updates_minimise_the_surrogate_over_the_unit_ball() -> None:
    g = torch.Generator().manual_seed(6)
    codes = k_sparse(500, 12, 3, g)
    x = torch.randn(500, 8, generator=g, dtype=torch.float64)
    a, b = codes.T @ codes / 500, codes.T @ x / 500
    d = random_unit_dictionary(12, 8, g, torch.float64)
    values = [surrogate(d, a, b)]
    for _ in range(200):
        d = update_dictionary(d, a, b)
        values.append(surrogate(d, a, b))
    assert all(later <= earlier + 1e-12 for earlier, later in itertools.pairwise(values))
    assert bool((d.norm(dim=1) <= 1 + 1e-12).all())
    # fixed point of projected block-coordinate steps: no atom moves any more (KKT of the ball constraints)
    again = update_dictionary(d, a, b)
    assert float((again - d).abs().max()) < 1e-6


def test_mairal_forgetting_matches_the_papers_rescaling() -> None:
    # θ = tη for t < η, then η² + t − η; β = (θ + 1 − η)/(θ + 1)   (t counted from 1 here, step = t − 1)
    assert forgetting(0, 4, "mairal", 10) == pytest.approx((4 + 1 - 4) / (4 + 1))
    assert forgetting(5, 4, "mairal", 10) == pytest.approx((16 + 6 - 4 + 1 - 4) / (16 + 6 - 4 + 1))
    assert forgetting(3, 4, 0.7, 10) == 0.7
    assert forgetting(3, 4, "auto", 10) == pytest.approx(0.8)
    assert forgetting(3, 4, "auto", 2) == 0.5


def test_online_learning_lowers_the_lasso_objective_on_a_fixed_data_set() -> None:
    g = torch.Generator().manual_seed(7)
    truth = random_unit_dictionary(30, 20, g, torch.float64)
    y = k_sparse(800, 30, 3, g) @ truth
    lam = 0.1

    def objective(epochs: int) -> float:
        config = OnlineDLConfig(width=30, lam=lam, epochs=epochs, batch_size=64, fista_iter=100)
        d = OnlineDictionaryLearning(config).fit(y, FitContext(seed=0)).dictionary
        return lasso_objective(y, fista(y, d, lam, max_iter=300, nonneg=True).codes, d, lam)

    values = [objective(epochs) for epochs in (1, 3, 10)]
    assert values[0] > values[1] > values[2]
    start = random_unit_dictionary(30, 20, torch.Generator().manual_seed(0), torch.float64)
    assert values[0] < lasso_objective(y, fista(y, start, lam, max_iter=300, nonneg=True).codes, start, lam)


def test_online_learning_recovers_a_small_dictionary() -> None:
    g = torch.Generator().manual_seed(8)
    truth = random_unit_dictionary(30, 20, g)
    y = (k_sparse(1500, 30, 3, g) @ truth.double()).float()
    model = OnlineDictionaryLearning(OnlineDLConfig(width=30, batch_size=128, epochs=20)).fit(y, FitContext(seed=0))
    assert matched_cosines(model.dictionary, truth).mean() > 0.98
    assert len(model.history) == 20 and model.history.unit == "epoch"


# --- every classical learner: persistence, the method registry, bad input ------------------------------------


PROBLEM = Problem(num_latents=12, k=2, input_dim=8, ground_truth=torch.zeros(12, 8), n_train=200)
FAST = {"mod": {"max_rounds": 3}, "ksvd": {"max_rounds": 3}, "online_dl": {"epochs": 2, "batch_size": 50}}


@pytest.mark.parametrize("name", sorted(FAST))
def test_saved_and_loaded_learners_give_the_same_codes(name: str, tmp_path) -> None:
    g = torch.Generator().manual_seed(9)
    y = (k_sparse(200, 12, 2, g) @ random_unit_dictionary(12, 8, g, torch.float64)).float()
    model = build_method(name, PROBLEM, FAST[name]).fit(y, FitContext(seed=1))
    save_model(model, tmp_path / name)
    loaded = load_model(tmp_path / name)
    assert type(loaded) is type(model)
    assert torch.equal(loaded.encode(y), model.encode(y))
    again = build_method(name, PROBLEM, FAST[name]).fit(y, FitContext(seed=1))
    assert torch.equal(again.dictionary, model.dictionary)  # the fit is a function of config, data and seed


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("ksvd", {"n_nonzero": 13}, "n_nonzero=13 must be at most width=12"),
        ("mod", {"coder": "omp", "n_nonzero": 0}, "n_nonzero"),
        ("online_dl", {"forget_factor": 1.5}, "forget_factor must be in (0, 1]"),
        ("online_dl", {"forget_factor": 0.0}, "forget_factor must be in (0, 1]"),
        ("online_dl", {"forget_factor": "sometimes"}, "forget_factor"),
        ("online_dl", {"batch_size": 0}, "batch_size"),
        ("mod", {"lam": -1.0}, "lam"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_parameter(name: str, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        build_method(name, PROBLEM, overrides)
    assert "\n" not in str(err.value)


def test_omp_codes_with_more_atoms_than_dimensions_are_refused_at_fit() -> None:
    model = build_method("ksvd", Problem(12, 9, 8, torch.zeros(12, 8)))
    with pytest.raises(ValueError, match=r"n_nonzero=9 must be at most the input dimension m=8"):
        model.fit(torch.randn(50, 8))


def test_omp_codes_without_a_k_name_the_field() -> None:
    with pytest.raises(ValueError, match="set n_nonzero"):
        build_method("ksvd", Problem(12, None, 8, torch.zeros(12, 8)))


@pytest.mark.parametrize("name", sorted(FAST))
def test_non_finite_data_are_refused(name: str) -> None:
    y = torch.randn(50, 8)
    y[3, 2] = float("nan")
    with pytest.raises(ValueError, match="y contains NaN or Inf"):
        build_method(name, PROBLEM, FAST[name]).fit(y)

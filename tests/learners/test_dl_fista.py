"""DL-FISTA: the dictionary update, the alternating-minimisation law, recovery, atom upkeep, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from dictlab.data import make_compositional, random_unit_dictionary
from dictlab.inference import fista
from dictlab.learners.dictionary_update import (
    atoms_to_replace,
    duplicate_threshold,
    least_squares_dictionary,
    normalize_atoms,
    replace_atoms,
)
from dictlab.learners.dl_fista import DLFista, DLFistaConfig, alternating_round, extrapolate, grow_dictionary
from dictlab.models import FitContext, load_model, save_model
from dictlab.models.base import derived_generator


def matched_cosines(learned: torch.Tensor, true: torch.Tensor) -> np.ndarray:
    """Float64 Hungarian matching on |cos| of row-normalised atoms; |cos| per true atom."""
    a = learned.double() / learned.double().norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = true.double() / true.double().norm(dim=1, keepdim=True)
    cosine = (b @ a.T).abs().numpy()
    rows, cols = linear_sum_assignment(cosine, maximize=True)
    return cosine[rows, cols]


def lasso_objective(y: torch.Tensor, z: torch.Tensor, d: torch.Tensor, lam: float) -> float:
    return float(0.5 * (y - z @ d).pow(2).sum() + lam * z.abs().sum())


def sparse_codes(n: int, p: int, density: float, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    values = torch.rand(n, p, generator=generator, dtype=dtype)
    return values * (torch.rand(n, p, generator=generator, dtype=dtype) < density)


@pytest.fixture(scope="module")
def easy():
    # p = 20 atoms in m = 15 dimensions, k = 2, 1000 training samples
    return [make_compositional(num_latents=20, k=2, n_samples=2000, input_dim=15, seed=s) for s in range(4)]


# --- the dictionary update --------------------------------------------------------------------------------


def test_dictionary_update_is_the_float64_least_squares_solution():
    g = torch.Generator().manual_seed(0)
    z = sparse_codes(300, 25, 0.2, g)
    y = torch.randn(300, 12, generator=g, dtype=torch.float64)
    ridge = 1e-3
    reference = torch.linalg.solve(z.T @ z + ridge * torch.eye(25, dtype=torch.float64), z.T @ y)
    got32 = least_squares_dictionary(z.float(), y.float(), ridge)
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32.double(), reference, rtol=1e-3, atol=1e-4)
    got64 = least_squares_dictionary(z, y, ridge)
    torch.testing.assert_close(got64, reference, rtol=1e-10, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(5, 60),
    p=st.integers(1, 12),
    m=st.integers(1, 8),
    density=st.floats(0.1, 1.0),
    ridge=st.sampled_from([0.0, 1e-6, 1e-2]),
    seed=st.integers(0, 10_000),
)
def test_dictionary_update_satisfies_the_normal_equations(n, p, m, density, ridge, seed):
    g = torch.Generator().manual_seed(seed)
    z = sparse_codes(n, p, density, g)
    y = torch.randn(n, m, generator=g, dtype=torch.float64)
    d = least_squares_dictionary(z, y, ridge)
    # gradient of ½‖Y − ZD‖² + ½ε‖D‖² vanishes: Zᵀ(ZD − Y) + εD = 0 (in the least-squares sense when singular)
    gradient = z.T @ (z @ d - y) + ridge * d
    scale = (z.T @ y).abs().max().clamp_min(1.0)
    if ridge > 0 or torch.linalg.matrix_rank(z) == p:
        assert gradient.abs().max() <= 1e-8 * scale
    else:  # singular: the minimum-norm solution still zeroes the projected gradient
        assert (z @ gradient).abs().max() <= 1e-6 * scale
    unused = ~(z != 0).any(dim=0)
    if ridge > 0 and unused.any():
        assert d[unused].abs().max() == 0  # an atom no sample uses gets a zero row


def test_normalize_atoms_keeps_zero_rows_zero():
    d = torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]])
    unit, norms = normalize_atoms(d)
    torch.testing.assert_close(unit, torch.tensor([[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]]))
    torch.testing.assert_close(norms, torch.tensor([5.0, 0.0, 2.0]))


def test_atoms_to_replace_finds_unused_and_the_less_used_duplicate():
    g = torch.Generator().manual_seed(1)
    d = random_unit_dictionary(6, 20, g, torch.float64)
    d[4] = d[1] + 0.01 * torch.randn(20, generator=g, dtype=torch.float64)  # a near-copy of atom 1
    codes = torch.ones(10, 6, dtype=torch.float64)
    codes[:, 3] = 0  # atom 3 unused
    codes[:5, 4] = 0  # atom 4 used less than its twin
    assert atoms_to_replace(d, codes, 0.9).tolist() == [3, 4]
    assert atoms_to_replace(d, codes, None).tolist() == [3]
    assert duplicate_threshold(1000, 93) == pytest.approx(0.6, abs=0.01)
    assert duplicate_threshold(20, 15) == 0.95


def test_replace_atoms_uses_the_worst_residuals_and_zeroes_their_codes():
    g = torch.Generator().manual_seed(2)
    d = random_unit_dictionary(5, 8, g, torch.float64)
    z = sparse_codes(40, 5, 0.5, g)
    y = z @ d
    y[7] += 3 * d[0].roll(1)  # sample 7 is explained worst
    new_d, new_z = replace_atoms(d, z, y, torch.tensor([2]))
    residual = y[7] - z[7] @ d
    torch.testing.assert_close(new_d[2], residual / residual.norm())
    assert new_z[:, 2].abs().max() == 0 and torch.equal(new_z[:, [0, 1, 3, 4]], z[:, [0, 1, 3, 4]])


# --- the alternating round ----------------------------------------------------------------------------------


def test_each_half_round_does_not_increase_the_objective_and_renormalisation_is_bounded():
    data = make_compositional(num_latents=20, k=3, n_samples=400, input_dim=12, seed=5)
    y = data.train.y.double()
    lam, ridge = 0.1, 1e-6
    d = random_unit_dictionary(20, 12, derived_generator(0, "test"), torch.float64)
    z = fista(y, d, lam, max_iter=2000, tol=1e-12, nonneg=True).codes
    for _ in range(5):
        start = lasso_objective(y, z, d, lam)
        step = alternating_round(y, d, z, lam, fista_iter=2000, ridge=ridge)
        after_codes = lasso_objective(y, step.codes, d, lam)
        assert after_codes <= start + 1e-9 * start  # codes step: FISTA to convergence from a warm start
        ridge_before = after_codes + 0.5 * ridge * float(d.pow(2).sum())
        ridge_after = lasso_objective(y, step.codes, step.fitted, lam) + 0.5 * ridge * float(step.fitted.pow(2).sum())
        assert ridge_after <= ridge_before + 1e-12 * ridge_before  # dictionary step: exact minimiser
        # renormalisation with codes rescaled by the norms keeps ZD; the L1 term moves by λ Σ_j (n_j − 1)‖z_j‖₁,
        # which is the only way a whole round can increase the objective
        rescaled = step.codes * step.norms
        torch.testing.assert_close(rescaled @ step.dictionary, step.codes @ step.fitted)
        moved = lam * float(((step.norms - 1) * step.codes.abs().sum(dim=0)).sum())
        end = lasso_objective(y, rescaled, step.dictionary, lam)
        assert end == pytest.approx(lasso_objective(y, step.codes, step.fitted, lam) + moved, rel=1e-9)
        assert end <= start + max(moved, 0.0) + 0.5 * ridge * float(d.pow(2).sum()) + 1e-9 * start
        d, z = step.dictionary, rescaled


def test_growth_seeds_new_atoms_with_the_worst_residuals_and_keeps_the_rest():
    g = torch.Generator().manual_seed(3)
    d = random_unit_dictionary(4, 6, g, torch.float64)
    z = sparse_codes(30, 4, 0.5, g)
    y = z @ d
    y[[5, 11]] += torch.randn(2, 6, generator=g, dtype=torch.float64) * torch.tensor([[4.0], [2.0]])
    grown, codes = grow_dictionary(y, d, z, 6, g)
    residual = y - z @ d
    assert grown.shape == (6, 6) and codes.shape == (30, 6)
    torch.testing.assert_close(grown[:4], d, rtol=0, atol=1e-15)  # unit rows, renormalised
    assert torch.equal(codes[:, :4], z) and codes[:, 4:].abs().max() == 0
    torch.testing.assert_close(grown[4], residual[5] / residual[5].norm())  # the worst sample first
    torch.testing.assert_close(grown[5], residual[11] / residual[11].norm())


def test_extrapolation_is_normalised_and_spares_fresh_and_empty_atoms():
    g = torch.Generator().manual_seed(4)
    previous = random_unit_dictionary(5, 7, g, torch.float64)
    new = random_unit_dictionary(5, 7, g, torch.float64)
    new[3] = 0  # an atom no code used
    out = extrapolate(new, previous, 0.9, fresh=torch.tensor([1]))
    expected = new[[0, 2, 4]] + 0.9 * (new[[0, 2, 4]] - previous[[0, 2, 4]])
    torch.testing.assert_close(out[[0, 2, 4]], expected / expected.norm(dim=1, keepdim=True))
    assert torch.equal(out[1], new[1]) and out[3].abs().max() == 0
    assert extrapolate(new, previous, 0.0, fresh=torch.tensor([], dtype=torch.long)) is new


def test_growth_schedule_starts_at_most_halfway_and_ends_at_full_width():
    default = DLFistaConfig(width=1000)
    assert default.growth_schedule(1000) == {100: 700, 115: 800, 130: 900, 145: 1000}
    short = DLFistaConfig(width=20, initial_fraction=0.5, max_rounds=30)  # the first growth moves to round 15
    assert short.growth_schedule(20) == {15: 13, 17: 15, 19: 18, 21: 20}  # all before upkeep stops (round 24)
    assert DLFistaConfig(width=20, max_rounds=2, growth_stages=4).growth_schedule(20) == {1: 20}  # stages merge
    assert DLFistaConfig.study(width=1000).growth_schedule(1000) == {}


def test_the_dictionary_grows_on_schedule_and_every_atom_ends_in_use(easy):
    data = easy[0]
    config = DLFistaConfig(width=20, initial_fraction=0.5, max_rounds=30, log_every=1)
    model = DLFista(config).fit(data.train.y, FitContext(seed=0))
    assert model.dictionary.shape == (20, data.input_dim)
    widths = [entry["width"] for entry in model.history]
    expected = [10] * 15 + [13] * 2 + [15] * 2 + [18] * 2 + [20] * 9
    assert widths == expected[: len(widths)] and widths[-1] == 20
    assert {entry["lam"] for entry in model.history[15:]} == {config.lam}  # λ drops to lam with the growth
    assert (model.encode(data.train.y) != 0).any(dim=0).all()


# --- fitting --------------------------------------------------------------------------------------------------


def test_recovers_the_dictionary_of_an_easy_problem(easy):
    cosines = []
    for seed, data in enumerate(easy):
        model = DLFista(DLFistaConfig(width=20)).fit(data.train.y, FitContext(seed=seed))
        cosines.append(matched_cosines(model.dictionary, data.dictionary))
    # from a random start up to 3 of the 20 atoms can end as mixtures of two true atoms (a local minimum
    # that atom upkeep does not detect: the mixture is no duplicate and is used)
    assert all((c > 0.98).mean() >= 0.85 for c in cosines), [np.round(c, 2) for c in cosines]
    assert np.mean([c.mean() for c in cosines]) > 0.95


def test_starting_at_the_truth_stays_there(easy):
    data = easy[0]
    model = DLFista(DLFistaConfig(width=20), initial_dictionary=data.dictionary * 3.0).fit(data.train.y)
    assert matched_cosines(model.dictionary, data.dictionary).min() > 0.99
    cosine = (model.dictionary * data.dictionary).sum(dim=1)  # same order, same sign: no relabelling happened
    assert cosine.min() > 0.99


def test_atom_upkeep_leaves_no_unused_atom(easy):
    data = easy[0]
    # all atoms from the start: upkeep alone (added atoms in excess of the latents may end unused)
    config = DLFistaConfig(width=40, lam=0.3, lam_start=None, max_rounds=60, duplicate_cosine=1.0, initial_fraction=1.0)
    revived = DLFista(config).fit(data.train.y, FitContext(seed=0))
    never = DLFista(config.model_copy(update={"upkeep_every": 0})).fit(data.train.y, FitContext(seed=0))
    assert (never.encode(data.train.y) != 0).any(dim=0).logical_not().sum() > 0  # the situation arises ...
    assert (revived.encode(data.train.y) != 0).any(dim=0).all()  # ... and upkeep resolves it
    assert revived.atoms_replaced > 0 and never.atoms_replaced == 0


def test_initial_dictionary_is_not_the_data_generators_draw():
    # make_compositional(seed=s) draws its true dictionary first from Generator().manual_seed(s)
    data = make_compositional(num_latents=50, k=3, n_samples=20, seed=7)
    start = random_unit_dictionary(50, data.input_dim, derived_generator(7, "dl_fista"))
    assert (start @ data.dictionary.T).abs().max() < 0.9


def test_history_logs_dictionary_quality_with_ground_truth(easy):
    from dictlab.metrics import match_dictionaries

    data = easy[2]
    model = DLFista(DLFistaConfig(width=20, max_rounds=25, log_every=10)).fit(
        data.train.y, FitContext(seed=2, ground_truth=data.dictionary)
    )
    assert model.history.unit == "round" and model.history.series("step") == [10, 20, 25]
    last = model.history[-1]
    assert last["mean_cosine"] == pytest.approx(match_dictionaries(model.dictionary, data.dictionary).mean_cosine)
    assert last["l0"] > 0 and last["mse_loss"] >= 0 and last["lam"] == model.final_lam
    plain = DLFista(DLFistaConfig(width=20, max_rounds=25, log_every=10)).fit(data.train.y, FitContext(seed=2))
    assert "mean_cosine" not in plain.history[-1]


def test_encode_is_fista_at_the_final_lambda_on_the_learned_dictionary(easy):
    data = easy[1]
    model = DLFista(DLFistaConfig(width=20, max_rounds=30, encode_iter=300)).fit(data.train.y)
    expected = fista(data["ood"].y, model.dictionary, model.final_lam, max_iter=300, nonneg=True).codes
    torch.testing.assert_close(model.encode(data["ood"].y), expected)
    assert model.final_lam >= model.settings.lam


def test_fit_is_deterministic_for_a_seed(easy):
    data = easy[3]
    config = DLFistaConfig(width=20, max_rounds=15)
    first = DLFista(config).fit(data.train.y, FitContext(seed=4)).dictionary
    again = DLFista(config).fit(data.train.y, FitContext(seed=4)).dictionary
    other = DLFista(config).fit(data.train.y, FitContext(seed=5)).dictionary
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_save_load_gives_identical_codes(easy, tmp_path):
    data = easy[0]
    offset = torch.linspace(-0.1, 0.1, data.input_dim)
    model = DLFista(DLFistaConfig(width=20, max_rounds=10), offset=offset).fit(data.train.y + offset)
    loaded = load_model(save_model(model, tmp_path / "dl"))
    assert isinstance(loaded, DLFista) and loaded.final_lam == model.final_lam
    codes = model.encode(data["ood"].y + offset)
    assert torch.equal(loaded.encode(data["ood"].y + offset), codes)
    assert torch.equal(loaded.decode(codes), model.decode(codes))


def test_study_preset_is_the_studys_run():
    study = DLFistaConfig.study(width=1000)
    assert (study.lam, study.lam_start, study.fista_iter, study.max_rounds) == (0.1, None, 100, 1000)
    assert (study.ridge, study.tol, study.min_rounds, study.upkeep_every) == (1e-6, 1e-5, 11, 0)
    assert (study.momentum, study.initial_fraction) == (0.0, 1.0)  # plain MOD, all atoms from the start


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"width": 10, "lam": -0.1}, "lam"),
        ({"width": 0}, "width"),
        ({"width": 5, "fista_iter": 0}, "fista_iter"),
        ({"width": 5, "lam": 0.3, "lam_start": 0.1}, "lam_start"),
        ({"width": 5, "speed": 2}, "speed"),
    ],
)
def test_bad_configs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DLFistaConfig(**kwargs)


def test_misuse_is_explained():
    with pytest.raises(ValueError, match="width"):
        DLFista(DLFistaConfig())
    with pytest.raises(ValueError, match="initial_dictionary has 3 atoms but width=4"):
        DLFista(DLFistaConfig(width=4), initial_dictionary=torch.randn(3, 5))
    with pytest.raises(ValueError, match="call fit first"):
        DLFista(DLFistaConfig(width=4)).encode(torch.randn(2, 5))
    with pytest.raises(ValueError, match="NaN"):
        DLFista(DLFistaConfig(width=4)).fit(torch.full((3, 5), float("nan")))

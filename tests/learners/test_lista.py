"""LISTA: the untrained network is ISTA, training lowers its objective, persistence and validation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dictlab.data import make_compositional
from dictlab.inference import fista, ista, lipschitz_constant
from dictlab.learners.lista import Lista, ListaConfig
from dictlab.models import FitContext, SparseCodingModel, load_model, save_model

WEIGHTS = ["untied", "tied", "coupled"]


@pytest.fixture(scope="module")
def data():
    return make_compositional(num_latents=40, k=3, n_samples=400, seed=4, dtype=torch.float64)


def _lasso(z: torch.Tensor, y: torch.Tensor, d: torch.Tensor, lam: float) -> float:
    """Mean over rows of ½‖y − zD‖² + λ‖z‖₁."""
    return float((0.5 * (z @ d - y).pow(2).sum(1) + lam * z.abs().sum(1)).mean())


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("nonneg", [True, False])
@pytest.mark.parametrize("n_layers", [1, 16])
def test_untrained_network_is_ista(data, weights, nonneg, n_layers):
    d, y = data.dictionary, data["id"].y
    config = ListaConfig(weights=weights, nonneg=nonneg, n_layers=n_layers, lam=0.05, epochs=0)
    expected = ista(y, d, 0.05, max_iter=n_layers, nonneg=nonneg).codes
    assert torch.count_nonzero(expected) > 0 and (nonneg or (expected < 0).any())
    torch.testing.assert_close(Lista(config, dictionary=d).encode(y), expected, rtol=1e-10, atol=1e-12)
    # fit with 0 epochs resets to the ISTA initialisation and trains nothing
    fitted = Lista(config, dictionary=d).fit(data.train.y)
    torch.testing.assert_close(fitted.encode(y), expected, rtol=1e-10, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    p=st.integers(1, 12),
    m=st.integers(1, 8),
    n_layers=st.integers(1, 8),
    lam=st.sampled_from([0.0, 0.01, 0.3]),
    weights=st.sampled_from(WEIGHTS),
    nonneg=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_untrained_network_is_ista_for_any_dictionary(p, m, n_layers, lam, weights, nonneg, seed):
    generator = torch.Generator().manual_seed(seed)
    d = torch.randn(p, m, generator=generator, dtype=torch.float64)
    y = torch.randn(7, m, generator=generator, dtype=torch.float64)
    config = ListaConfig(weights=weights, nonneg=nonneg, n_layers=n_layers, lam=lam)
    expected = ista(y, d, lam, max_iter=n_layers, nonneg=nonneg).codes
    torch.testing.assert_close(Lista(config, dictionary=d).encode(y), expected, rtol=1e-9, atol=1e-11)


def test_initial_weights_are_the_ista_step(data):
    d = data.dictionary
    model = Lista(ListaConfig(weights="untied", n_layers=3, lam=0.2), dictionary=d)
    step = 1.0 / lipschitz_constant(d)
    eye = torch.eye(d.shape[0], dtype=d.dtype)
    for k in range(3):
        torch.testing.assert_close(model.W[k], eye - d @ d.T * step)  # the paper's I − AᵀA/L with A = Dᵀ
        torch.testing.assert_close(model.S[k], d * step)  # the paper's Aᵀ/L
        torch.testing.assert_close(model.theta[k], torch.full((d.shape[0],), 0.2 * step, dtype=d.dtype))


@pytest.mark.parametrize("weights", WEIGHTS)
def test_training_beats_as_many_fista_iterations(data, weights):
    # Gregor & LeCun's point: a trained K-layer network gets closer to the Lasso optimum than K iterations
    d, lam = data.dictionary, 0.1
    config = ListaConfig(weights=weights, n_layers=4, lam=lam, epochs=8, batch_size=50, lr=3e-3)
    model = Lista(config, dictionary=d).fit(data.train.y, FitContext(seed=0))
    y = data["id"].y  # held-out rows: the network generalises, not only memorises
    optimum = _lasso(fista(y, d, lam, max_iter=2000, nonneg=True).codes, y, d, lam)
    fista4 = _lasso(fista(y, d, lam, max_iter=4, nonneg=True).codes, y, d, lam)
    after = _lasso(model.encode(y), y, d, lam)
    assert optimum < after < fista4 - 0.3 * (fista4 - optimum)  # closes ≥ 30 % of FISTA-4's gap (seen: ~43 %)
    assert torch.equal(model.dictionary, d)  # the dictionary is fixed during training


def test_study_objective_is_mse_plus_mean_l1(data):
    d, y = data.dictionary, data["id"].y[:20]
    for objective in ("study", "lasso"):
        model = Lista(ListaConfig(objective=objective, lam=0.3, n_layers=2), dictionary=d)
        with torch.no_grad():
            z = model(y)
            expected = (
                (z @ d - y).pow(2).mean() + 0.3 * z.abs().mean()
                if objective == "study"
                else torch.tensor(_lasso(z, y, d, 0.3), dtype=y.dtype)
            )
            torch.testing.assert_close(model.loss(y), expected)


def test_study_config():
    config = ListaConfig.study()
    assert (config.n_layers, config.lr, config.epochs, config.batch_size) == (16, 1e-3, 200, 64)
    assert (config.weights, config.objective, config.nonneg, config.threshold_init) == ("untied", "study", False, 0.01)
    assert ListaConfig.study(epochs=3).epochs == 3


def test_same_seed_same_model_other_seed_other_model(data):
    config = ListaConfig(n_layers=3, epochs=2, batch_size=64)
    fit = lambda seed: Lista(config, dictionary=data.dictionary).fit(data.train.y, FitContext(seed=seed))  # noqa: E731
    a, b, c = fit(5), fit(5), fit(6)
    assert torch.equal(a.encode(data["id"].y), b.encode(data["id"].y))
    assert not torch.equal(a.encode(data["id"].y), c.encode(data["id"].y))


def test_without_a_dictionary_fit_learns_one_first(data):
    # "dl_lista": the dictionary comes from the learner's fit; here a stand-in whose dictionary is the truth
    config = ListaConfig(n_layers=3, epochs=1, batch_size=100)
    given = Lista(config, dictionary=data.dictionary).fit(data.train.y)
    learned = Lista(config, dictionary_learner=SparseCodingModel(data.dictionary)).fit(data.train.y)
    assert torch.equal(learned.encode(data["id"].y), given.encode(data["id"].y))


@pytest.mark.parametrize("weights", WEIGHTS)
def test_save_load_gives_identical_outputs(data, weights, tmp_path):
    model = Lista(ListaConfig(weights=weights, n_layers=3, epochs=1, batch_size=100), dictionary=data.dictionary)
    model.fit(data.train.y)
    loaded = load_model(save_model(model, tmp_path / weights))
    assert isinstance(loaded, Lista) and loaded.settings == model.settings
    assert torch.equal(loaded.encode(data["ood"].y), model.encode(data["ood"].y))
    assert torch.equal(loaded.dictionary, model.dictionary)


def test_float32_dictionary_gives_float32_codes(data):
    model = Lista(ListaConfig(n_layers=5), dictionary=data.dictionary.float())
    codes = model.encode(data["id"].y)  # float64 input is cast to the network's dtype
    assert codes.dtype == torch.float32
    expected = ista(data["id"].y, data.dictionary, 0.1, max_iter=5, nonneg=True).codes
    torch.testing.assert_close(codes.double(), expected, rtol=1e-4, atol=1e-5)


def test_invalid_inputs_are_rejected(data):
    d = data.dictionary
    model = Lista(ListaConfig(n_layers=2), dictionary=d)
    with pytest.raises(ValueError, match=f"must have {d.shape[1]} columns"):
        model.encode(data["id"].y[:, :-1])
    with pytest.raises(ValueError, match=f"must have {d.shape[1]} columns"):
        model.fit(data["id"].y[:, :-1])
    bad = data["id"].y.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.fit(bad)
    with pytest.raises(ValueError, match="no dictionary yet"):
        Lista().encode(data["id"].y)
    with pytest.raises(ValueError, match="dictionary"):
        Lista(dictionary=torch.ones(3))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_layers", 0),
        ("lam", -1.0),
        ("lr", 0.0),
        ("threshold_lr", 2.0),
        ("epochs", -1),
        ("batch_size", 0),
        ("weights", "shared"),
        ("objective", "l2"),
        ("threshold_init", -0.1),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        ListaConfig(**{field: value})


def test_saved_tensors_of_the_wrong_shape_are_rejected(data):
    model = Lista(ListaConfig(weights="tied", n_layers=2), dictionary=data.dictionary)
    tensors = model.tensors()
    tensors["S"] = tensors["S"][:-1]
    with pytest.raises(ValueError, match="'S' must have shape"):
        Lista.from_saved(model.config(), tensors)

"""The linear probe: exact leave-one-out ridge against scikit-learn's RidgeCV and brute force, the derived decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Ridge, RidgeCV

from dictlab.baselines import RidgeProbe, RidgeProbeConfig, ridge_loo
from dictlab.data import make_compositional
from dictlab.models import FitContext, load_model, save_model


@pytest.fixture(scope="module")
def data():
    return make_compositional(num_latents=60, k=5, n_samples=600, seed=1, dtype=torch.float64)


def _sklearn(y: torch.Tensor, z: torch.Tensor, alphas) -> RidgeCV:
    return RidgeCV(alphas=list(alphas), fit_intercept=False).fit(y.double().numpy(), z.double().numpy())


def test_matches_sklearn_ridgecv_on_study_data(data):
    y, z = data.train.y, data.train.codes.to_dense()
    probe = RidgeProbe().fit(y, FitContext(codes=z))
    reference = _sklearn(y, z, RidgeProbeConfig().alphas)
    assert probe.alpha_ == reference.alpha_
    np.testing.assert_allclose(probe.coef.numpy(), reference.coef_.T, rtol=1e-9, atol=1e-12)
    assert float(probe.cv_errors.min()) == pytest.approx(-reference.best_score_, rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(8, 40),
    m=st.integers(1, 6),
    p=st.integers(1, 5),
    noise=st.sampled_from([1e-3, 0.3, 3.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_alpha_and_weights_equal_sklearn_for_any_problem(n, m, p, noise, seed):
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, m))
    z = y @ rng.standard_normal((m, p)) + noise * rng.standard_normal((n, p))
    alphas = (1e-6, 1e-4, 1e-2, 1.0, 10.0, 1e3)
    probe = RidgeProbe(RidgeProbeConfig(alphas=alphas)).fit(torch.from_numpy(y), FitContext(codes=torch.from_numpy(z)))
    reference = _sklearn(torch.from_numpy(y), torch.from_numpy(z), alphas)
    assert probe.alpha_ == reference.alpha_
    np.testing.assert_allclose(probe.coef.numpy(), reference.coef_.reshape(p, m).T, rtol=1e-7, atol=1e-10)


def test_loo_errors_equal_brute_force_refits():
    # The closed form must equal literally leaving each sample out and refitting ridge on the rest.
    rng = np.random.default_rng(0)
    y, z = rng.standard_normal((15, 4)), rng.standard_normal((15, 3))
    alphas = (1e-3, 0.5, 20.0)
    weights, errors = ridge_loo(torch.from_numpy(y), torch.from_numpy(z), alphas)
    for a, alpha in enumerate(alphas):
        squared = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            fit = Ridge(alpha=alpha, fit_intercept=False, solver="svd").fit(y[keep], z[keep])
            squared.append((z[i] - fit.predict(y[i : i + 1])[0]) ** 2)
        assert float(errors[a]) == pytest.approx(np.mean(squared), rel=1e-10)
        full = Ridge(alpha=alpha, fit_intercept=False, solver="svd").fit(y, z)
        np.testing.assert_allclose(weights[a].numpy(), full.coef_.T, rtol=1e-10, atol=1e-12)


def test_derived_dictionary_is_the_least_squares_decoder(data):
    y, z = data.train.y, data.train.codes.to_dense()
    probe = RidgeProbe().fit(y, FitContext(codes=z))
    codes = probe.encode(y).numpy()
    lstsq = np.linalg.lstsq(codes, y.numpy(), rcond=None)[0]  # min-norm argmin ‖Y − Ẑ D‖
    np.testing.assert_allclose(probe.dictionary.numpy(), lstsq, atol=1e-8)
    # W D = I, so decoding the probe's codes returns any observation, in or out of distribution
    torch.testing.assert_close(probe.decode(probe.encode(data["ood"].y)), data["ood"].y, rtol=0, atol=1e-9)


def test_float32_input_gives_float32_codes_close_to_float64(data):
    y, z = data.train.y, data.train.codes.to_dense()
    probe64 = RidgeProbe().fit(y, FitContext(codes=z))
    probe32 = RidgeProbe().fit(y.float(), FitContext(codes=z.float()))
    assert probe32.encode(data["id"].y.float()).dtype == torch.float32
    assert probe32.alpha_ == probe64.alpha_
    torch.testing.assert_close(probe32.coef.double(), probe64.coef, rtol=1e-4, atol=1e-5)


def test_sparse_codes_are_accepted(data):
    dense = RidgeProbe().fit(data.train.y, FitContext(codes=data.train.codes.to_dense()))
    sparse = RidgeProbe().fit(data.train.y, FitContext(codes=data.train.codes))
    torch.testing.assert_close(sparse.coef, dense.coef)


def test_save_load_gives_identical_outputs(data, tmp_path):
    probe = RidgeProbe().fit(data.train.y, FitContext(codes=data.train.codes.to_dense()))
    loaded = load_model(save_model(probe, tmp_path / "probe"))
    assert isinstance(loaded, RidgeProbe) and loaded.alpha_ == probe.alpha_
    assert torch.equal(loaded.encode(data["ood"].y), probe.encode(data["ood"].y))
    assert torch.equal(loaded.dictionary, probe.dictionary)


def test_missing_codes_are_an_actionable_error(data):
    with pytest.raises(ValueError, match=r"supervised: pass the true training codes in FitContext.codes"):
        RidgeProbe().fit(data.train.y)
    with pytest.raises(ValueError, match="supervised"):
        RidgeProbe().fit(data.train.y, FitContext(seed=3))


@pytest.mark.parametrize(
    ("make_inputs", "message"),
    [
        (lambda y, z: (y, z[:-1]), r"FitContext.codes must have 300 rows"),
        (lambda y, z: (y.clone().fill_(float("nan")), z), "NaN or Inf"),
        (lambda y, z: (y[:1], z[:1]), "at least 2 training rows"),
        (lambda y, z: (y, z.long()), "floating-point"),
    ],
)
def test_bad_inputs_are_rejected(data, make_inputs, message):
    y, z = make_inputs(data.train.y, data.train.codes.to_dense())
    with pytest.raises(ValueError, match=message):
        RidgeProbe().fit(y, FitContext(codes=z))


def test_config_rejects_bad_alphas():
    with pytest.raises(ValueError, match="alpha"):
        RidgeProbeConfig(alphas=(1.0, 0.0))
    with pytest.raises(ValueError, match="alphas"):
        RidgeProbeConfig(alphas=())


def test_unfitted_probe_says_so(data):
    with pytest.raises(ValueError, match="not fitted"):
        RidgeProbe().encode(data["id"].y)

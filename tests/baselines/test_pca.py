"""The PCA baseline against scikit-learn's PCA, its projection laws, and persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA

from dictlab.baselines import PCABaseline, PCAConfig
from dictlab.data import make_compositional
from dictlab.models import load_model, save_model


@pytest.fixture(scope="module")
def data():
    return make_compositional(num_latents=60, k=5, n_samples=600, seed=2, dtype=torch.float64)


def _aligned(actual: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``actual`` with each row's sign flipped to agree with ``reference`` (PCA is defined up to sign)."""
    signs = np.sign(np.sum(actual * reference, axis=1, keepdims=True))
    return actual * signs


def test_equals_sklearn_pca(data):
    pca = PCABaseline(PCAConfig(n_components=5)).fit(data.train.y)
    reference = PCA(n_components=5, svd_solver="full").fit(data.train.y.numpy())
    np.testing.assert_allclose(pca.dictionary.numpy(), reference.components_, atol=1e-10)  # same sign convention
    np.testing.assert_allclose(pca.offset.numpy(), reference.mean_, atol=1e-12)
    np.testing.assert_allclose(pca.explained_variance.numpy(), reference.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(
        pca.encode(data["ood"].y).numpy(), reference.transform(data["ood"].y.numpy()), atol=1e-10
    )


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(3, 30),
    m=st.integers(1, 8),
    data_seed=st.integers(0, 2**31 - 1),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
def test_matches_sklearn_up_to_sign_for_any_data(n, m, data_seed, scale):
    y = scale * np.random.default_rng(data_seed).standard_normal((n, m))
    k = min(n - 1, m)  # centring leaves rank ≤ n − 1; directions beyond it are arbitrary
    pca = PCABaseline(PCAConfig(n_components=k)).fit(torch.from_numpy(y))
    reference = PCA(n_components=k, svd_solver="full").fit(y)
    aligned = _aligned(pca.dictionary.numpy(), reference.components_)
    np.testing.assert_allclose(aligned, reference.components_, atol=1e-8)
    # the sign convention: every component's largest-magnitude entry is positive
    rows = np.arange(k)
    comps = pca.dictionary.numpy()
    assert (comps[rows, np.abs(comps).argmax(axis=1)] > 0).all()


def test_components_are_orthonormal_and_reconstruction_is_a_projection(data):
    pca = PCABaseline(PCAConfig(n_components=7)).fit(data.train.y)
    c = pca.dictionary
    torch.testing.assert_close(c @ c.T, torch.eye(7, dtype=c.dtype), atol=1e-12, rtol=0)
    y = data["id"].y
    once = pca.decode(pca.encode(y))
    torch.testing.assert_close(pca.decode(pca.encode(once)), once, atol=1e-12, rtol=0)  # idempotent
    # the residual is orthogonal to every component
    torch.testing.assert_close((y - once) @ c.T, torch.zeros(len(y), 7, dtype=y.dtype), atol=1e-12, rtol=0)


def test_all_components_reconstruct_exactly(data):
    pca = PCABaseline().fit(data.train.y)  # None: all min(N, m) components
    assert pca.dictionary.shape == (data.input_dim, data.input_dim)
    torch.testing.assert_close(pca.decode(pca.encode(data["ood"].y)), data["ood"].y, atol=1e-12, rtol=0)


def test_float32_stays_float32_and_agrees_with_float64(data):
    pca64 = PCABaseline(PCAConfig(n_components=5)).fit(data.train.y)
    pca32 = PCABaseline(PCAConfig(n_components=5)).fit(data.train.y.float())
    assert pca32.encode(data["id"].y.float()).dtype == torch.float32
    torch.testing.assert_close(pca32.dictionary.double(), pca64.dictionary, atol=1e-4, rtol=0)


def test_save_load_gives_identical_outputs(data, tmp_path):
    pca = PCABaseline(PCAConfig(n_components=5)).fit(data.train.y)
    loaded = load_model(save_model(pca, tmp_path / "pca"))
    assert isinstance(loaded, PCABaseline) and loaded.settings == pca.settings
    assert torch.equal(loaded.encode(data["ood"].y), pca.encode(data["ood"].y))
    assert torch.equal(loaded.decode(pca.encode(data["ood"].y)), pca.decode(pca.encode(data["ood"].y)))


@pytest.mark.parametrize("n_components", [0, -1])
def test_config_rejects_non_positive_components(n_components):
    with pytest.raises(ValueError, match="n_components"):
        PCAConfig(n_components=n_components)


def test_too_many_components_and_bad_data_are_rejected(data):
    m = data.input_dim
    with pytest.raises(ValueError, match=rf"n_components \(with N=300, m={m}\) must be in \[1, {m}\], got {m + 1}"):
        PCABaseline(PCAConfig(n_components=m + 1)).fit(data.train.y)
    with pytest.raises(ValueError, match="at least 2 observations"):
        PCABaseline(PCAConfig(n_components=1)).fit(data.train.y[:1])
    bad = data.train.y.clone()
    bad[3, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        PCABaseline(PCAConfig(n_components=1)).fit(bad)
    fitted = PCABaseline(PCAConfig(n_components=2)).fit(data.train.y)
    with pytest.raises(ValueError, match=f"must have {m} columns"):
        fitted.encode(data.train.y[:, :-1])
    with pytest.raises(ValueError, match="not fitted"):
        PCABaseline().encode(data.train.y)

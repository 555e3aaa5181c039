"""The compositional generator: pools, settings, splits, determinism, the compressed-sensing bound."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dictlab.data import CompositionalConfig, input_dim_from_cs_bound, make_compositional, sample_distinct


@pytest.fixture(scope="module")
def data():
    return make_compositional(num_latents=60, k=5, n_samples=4000, seed=3)


def test_input_dim_matches_study_table():
    # STUDY-SPEC §1.4: k=10 gives 33, 47, 79, 93, 125, 139 for p = 50 … 10,000
    expected = {50: 33, 100: 47, 500: 79, 1000: 93, 5000: 125, 10000: 139}
    assert {p: input_dim_from_cs_bound(p, 10) for p in expected} == expected
    assert input_dim_from_cs_bound(1000, 2) == 25 and input_dim_from_cs_bound(1000, 100) == 461


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_latents": 10, "k": 10}, "k=10 must be smaller than num_latents=10"),
        ({"num_latents": 100, "k": 10, "input_dim": 5}, "input_dim=5 must be >= k=10"),
        ({"num_latents": 100, "k": 10, "input_dim": 101}, "must be <= num_latents=100"),
    ],
)
def test_impossible_configs_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CompositionalConfig(**kwargs)


@given(p=st.integers(2, 20_000), k=st.integers(1, 200))
def test_the_study_constant_never_reaches_past_num_latents(p, k):
    # 2 ln x < x for every x > 1, so with c = 2 the bound stays at or below p; max(k+1, …) ≤ p since k < p
    if k < p:
        m = input_dim_from_cs_bound(p, k)
        assert k + 1 <= m <= p
        assert m == max(k + 1, math.ceil(2 * k * math.log(p / k)))


def test_a_larger_constant_is_capped_at_num_latents():
    # the Donoho-Tanner grid's c = 4 at p = 20, k = 8 asks for 30 > 20 dimensions: δ = m/p = 1, as in the study
    assert input_dim_from_cs_bound(20, 8, c=4.0) == 20
    assert CompositionalConfig(num_latents=20, k=8, cs_constant=4.0).resolved_input_dim == 20
    with pytest.raises(ValueError, match="k=20 must be smaller than num_latents=20"):
        input_dim_from_cs_bound(20, 20)


def test_unknown_field_is_rejected():
    with pytest.raises(ValueError, match="num_latent"):
        CompositionalConfig(num_latent=100)


def test_shapes_and_unit_atoms(data):
    p, m = data.num_latents, data.input_dim
    assert (p, m) == (60, math.ceil(2 * 5 * math.log(60 / 5)))
    assert torch.allclose(data.dictionary.norm(dim=1), torch.ones(p), atol=1e-6)
    assert (len(data.train), len(data["id"]), len(data["ood"])) == (2000, 2000, 2000)


def test_codes_are_exactly_k_sparse_with_uniform_magnitudes(data):
    for split in (data.train, data["id"], data["ood"]):
        dense = split.codes.to_dense()
        assert ((dense > 0).sum(dim=1) == 5).all()  # distinct indices, all values > 0 a.s.
        values = split.codes.values
        assert values.min() >= 0 and values.max() <= 1
        assert abs(values.mean().item() - 0.5) < 0.02


def test_observations_are_codes_times_dictionary(data):
    for split in (data.train, data["ood"]):
        expected = split.codes.to_dense().double() @ data.dictionary.double()
        assert torch.allclose(split.y.double(), expected, atol=1e-5)


def test_ood_split_is_z0_with_ood_pool_only(data):
    p, num_ood = data.num_latents, data.num_latents // 2
    idx = data["ood"].codes.indices
    assert (idx[:, 0] == 0).all()
    assert (idx[:, 1:] >= p - num_ood).all()


def test_training_data_never_puts_z0_with_an_ood_latent(data):
    p, num_ood = data.num_latents, data.num_latents // 2
    for split in (data.train, data["id"]):
        dense = split.codes.to_dense()
        with_z0 = dense[:, 0] > 0
        assert with_z0.any()
        assert (dense[with_z0][:, p - num_ood :] == 0).all()
        # setting B still shows OOD-pool latents, just never together with z0
        assert (dense[~with_z0][:, p - num_ood :] > 0).any()


def test_settings_a_and_b_are_equally_likely_and_labels_follow_z0(data):
    for split, rate in ((data.train, 0.25), (data["ood"], 0.5)):
        z0 = split.codes.to_dense()[:, 0]
        assert torch.equal(split.labels, z0 > 0.5)
        assert abs(split.labels.float().mean().item() - rate) < 0.04


def test_same_seed_same_data_other_seed_other_data():
    a = make_compositional(num_latents=50, k=4, n_samples=200, seed=11)
    b = make_compositional(num_latents=50, k=4, n_samples=200, seed=11)
    c = make_compositional(num_latents=50, k=4, n_samples=200, seed=12)
    assert torch.equal(a.train.y, b.train.y) and torch.equal(a["ood"].codes.indices, b["ood"].codes.indices)
    assert not torch.equal(a.dictionary, c.dictionary)


def test_sample_distinct_is_uniform_over_the_pool():
    gen = torch.Generator().manual_seed(0)
    draws = sample_distinct(20000, 3, 7, gen, offset=10)
    assert draws.min() >= 10 and draws.max() <= 16
    assert (draws.sort(dim=1).values.diff(dim=1) > 0).all()  # distinct in each row
    counts = torch.bincount(draws.flatten() - 10, minlength=7).float()
    expected = 20000 * 3 / 7
    assert ((counts - expected).abs() / expected < 0.03).all()


def test_noise_is_added_only_when_asked():
    clean = make_compositional(num_latents=50, k=4, n_samples=100, seed=0)
    noisy = make_compositional(num_latents=50, k=4, n_samples=100, seed=0, noise_std=0.1)
    residual = noisy.train.y - noisy.train.codes.decode(noisy.dictionary)
    assert 0.08 < residual.std().item() < 0.12
    assert torch.allclose(clean.train.codes.decode(clean.dictionary), clean.train.y, atol=1e-6)

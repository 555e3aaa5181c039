"""MCC: Pearson |ρ| matrix, Hungarian matching, split handling, chance floor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dictlab.metrics.correlation as correlation
from dictlab.data import SparseCodes
from dictlab.metrics import abs_correlation, mcc, mcc_chance, split_mcc, split_mcc_with_chance

# Mutually orthogonal, zero-mean columns: every |ρ| between different ones is exactly 0.
HADAMARD = torch.tensor([[1.0, 1, 1], [-1, 1, -1], [1, -1, -1], [-1, -1, 1]], dtype=torch.float64)


def sparse_codes(n: int, p: int, k: int, seed: int) -> SparseCodes:
    g = torch.Generator().manual_seed(seed)
    indices = torch.rand(n, p, generator=g).argsort(dim=1)[:, :k]
    return SparseCodes(indices, torch.rand(n, k, generator=g), p)


def numpy_abs_corr(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    a = t.shape[1]
    c = np.corrcoef(t.T, p.T)[:a, a:]
    return np.abs(np.nan_to_num(c))


def test_abs_correlation_matches_numpy_on_dense_and_sparse_truth():
    g = torch.Generator().manual_seed(0)
    dense_true = torch.randn(300, 7, generator=g, dtype=torch.float64)
    sparse_true = sparse_codes(300, 40, 2, seed=1).to_dense().double()  # 5 % non-zeros: sparse path
    codes = torch.randn(300, 9, generator=g, dtype=torch.float64) + 0.3 * torch.cat([dense_true, dense_true[:, :2]], 1)
    for true in (dense_true, sparse_true):
        got = abs_correlation(true, codes).numpy()
        np.testing.assert_allclose(got, numpy_abs_corr(true.numpy(), codes.numpy()), atol=1e-12)


def test_abs_correlation_is_blockwise_consistent(monkeypatch):
    g = torch.Generator().manual_seed(2)
    true, codes = torch.randn(50, 4, generator=g), torch.randn(50, 11, generator=g)
    whole = abs_correlation(true, codes)
    monkeypatch.setattr(correlation, "_BLOCK_BYTES", 8 * 50 * 3)  # 3 code columns per block
    torch.testing.assert_close(abs_correlation(true, codes), whole, rtol=0, atol=1e-14)


def test_constant_columns_have_zero_correlation():
    true = torch.cat([HADAMARD, torch.full((4, 1), 0.3)], dim=1)
    codes = torch.cat([HADAMARD * 2, torch.full((4, 1), 7.0)], dim=1)
    corr = abs_correlation(true, codes)
    assert corr[3].abs().max() == 0 and corr[:, 3].abs().max() == 0
    result = mcc(true, codes)
    torch.testing.assert_close(result.per_latent, torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64))
    assert result.mcc == pytest.approx(0.75)


@pytest.mark.parametrize("dense", [False, True])
def test_permuted_rescaled_shifted_copy_scores_one(dense):
    g = torch.Generator().manual_seed(3)
    true = torch.randn(500, 30, generator=g) if dense else sparse_codes(500, 30, 3, seed=3).to_dense()
    perm = torch.randperm(30, generator=g)
    scale = torch.rand(30, generator=g) * 5 + 0.1
    codes = true[:, perm] * scale + 4.0
    result = mcc(true, codes)
    assert result.mcc == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(result.per_latent, torch.ones(30, dtype=torch.float64), rtol=0, atol=1e-6)
    # true latent perm[j] sits in code column j, so the assignment inverts perm
    assert torch.equal(result.assignment[perm], torch.arange(30))


def test_independent_noise_is_near_zero_and_at_chance():
    g = torch.Generator().manual_seed(1234)
    true = sparse_codes(5000, 20, 3, seed=4)
    noise = torch.rand(5000, 20, generator=g)
    value = split_mcc(true, noise).mcc
    chance = mcc_chance(true, noise, torch.Generator().manual_seed(0))
    assert value < 0.05 and chance < 0.05
    assert value <= chance + 0.02


def test_chance_floor_is_far_below_a_perfect_score_and_reproducible():
    true = sparse_codes(2000, 50, 5, seed=5)
    codes = true.to_dense() * 2
    first = mcc_chance(true, codes, torch.Generator().manual_seed(7))
    second = mcc_chance(true, codes, torch.Generator().manual_seed(7))
    assert first == second
    assert split_mcc(true, codes).mcc == pytest.approx(1.0, abs=1e-9)
    assert first < 0.2


def test_sparse_truth_gives_the_dense_correlations_and_the_chance_floor_of_permuted_codes():
    # SparseCodes are never densified: column statistics from (indices, values), chance by permuting the
    # truth's samples. Both must equal the dense definitions: split_mcc(dense), split_mcc(dense, codes[perm]).
    true = sparse_codes(600, 40, 4, seed=11)
    g = torch.Generator().manual_seed(1)
    codes = torch.relu(true.to_dense() @ torch.randn(40, 55, generator=g) + 0.3 * torch.randn(600, 55, generator=g))
    dense = true.to_dense()
    result, chance = split_mcc_with_chance(true, codes, torch.Generator().manual_seed(3))
    reference = split_mcc(dense, codes)
    torch.testing.assert_close(result.per_latent, reference.per_latent, rtol=0, atol=1e-12)
    assert torch.equal(result.assignment, reference.assignment)
    perm = torch.randperm(600, generator=torch.Generator().manual_seed(3))
    assert chance == pytest.approx(split_mcc(dense, codes[perm]).mcc, abs=1e-12)
    assert chance == mcc_chance(true, codes, torch.Generator().manual_seed(3))
    assert mcc_chance(dense, codes, torch.Generator().manual_seed(3)) == pytest.approx(chance, abs=1e-12)
    assert 0.05 < chance < result.mcc


def test_fewer_units_than_latents_scores_missing_latents_as_zero():
    codes = torch.stack([HADAMARD[:, 2] * 5, HADAMARD[:, 0] + 3], dim=1)
    result = mcc(HADAMARD, codes)
    assert result.mcc == pytest.approx(2 / 3)
    torch.testing.assert_close(result.per_latent, torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
    assert result.assignment.tolist() == [1, -1, 0]


def test_split_mcc_drops_inactive_latents_and_accepts_sparse_codes():
    true = sparse_codes(400, 12, 2, seed=6)
    dense = true.to_dense()
    dense[:, 5] = 0.0  # latent 5 never fires in this split
    sparse = SparseCodes(true.indices, true.values * (true.indices != 5), 12)
    codes = dense[:, torch.randperm(12, generator=torch.Generator().manual_seed(0))]
    from_dense, from_sparse = split_mcc(dense, codes), split_mcc(sparse, codes)
    expected = torch.tensor([i for i in range(12) if i != 5])
    assert torch.equal(from_dense.true_latents, expected) and torch.equal(from_sparse.true_latents, expected)
    assert from_dense.mcc == pytest.approx(1.0, abs=1e-9) and from_sparse.mcc == pytest.approx(from_dense.mcc)
    assert mcc(dense, codes).mcc == pytest.approx(11 / 12, abs=1e-9)  # plain mcc counts latent 5 as 0


def test_numpy_inputs_and_validation():
    true = sparse_codes(100, 5, 2, seed=8).to_dense().numpy()
    assert mcc(true, true[:, ::-1] * 3).mcc == pytest.approx(1.0, abs=1e-9)
    bad = true.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mcc(bad, true)
    with pytest.raises(ValueError, match="rows"):
        mcc(true, true[:50])
    with pytest.raises(ValueError, match="no true latent varies"):
        split_mcc(np.zeros((10, 3)), true[:10])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(20, 120),
    a=st.integers(1, 8),
    b=st.integers(1, 10),
)
def test_mcc_is_invariant_to_unit_permutation_and_positive_scaling(seed, n, a, b):
    g = torch.Generator().manual_seed(seed)
    true = torch.randn(n, a, generator=g, dtype=torch.float64)
    codes = torch.randn(n, b, generator=g, dtype=torch.float64) + 0.7 * true[:, torch.randint(a, (b,), generator=g)]
    perm = torch.randperm(b, generator=g)
    scale = torch.exp(torch.randn(b, generator=g, dtype=torch.float64))
    base = mcc(true, codes)
    moved = mcc(true, codes[:, perm] * scale)
    assert 0.0 <= base.mcc <= 1.0 + 1e-12
    assert moved.mcc == pytest.approx(base.mcc, abs=1e-9)
    assert mcc(true, -codes).mcc == pytest.approx(base.mcc, abs=1e-9)  # |ρ| ignores signs too


def test_a_latent_constant_in_every_sample_is_inactive_for_sparse_and_dense_truth():
    g = torch.Generator().manual_seed(12)
    indices = torch.stack([torch.zeros(50, dtype=torch.long), torch.arange(50) % 5 + 1], dim=1)
    values = torch.stack([torch.full((50,), 0.7), torch.rand(50, generator=g)], dim=1)
    true = SparseCodes(indices, values, 6)  # latent 0 fires everywhere with the same value: no variance
    codes = torch.rand(50, 6, generator=g)
    assert split_mcc(true, codes).true_latents.tolist() == [1, 2, 3, 4, 5]
    assert split_mcc(true.to_dense(), codes).mcc == pytest.approx(split_mcc(true, codes).mcc, abs=1e-12)

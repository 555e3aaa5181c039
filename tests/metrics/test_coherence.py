"""Mutual coherence, the Babel function, the coherence recovery bound and the sampled RIP constant of a dictionary
with atoms as rows."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import dictlab.metrics.coherence as coherence
from dictlab.metrics import babel, coherence_recovery_bound, mutual_coherence, rip_constant_estimate


def brute_force_babel(d: torch.Tensor, s: int) -> float:
    unit = d / d.norm(dim=1, keepdim=True)
    g = (unit @ unit.T).abs()
    p = d.shape[0]
    return max(
        float(sum(g[i, j] for j in subset))
        for i in range(p)
        for subset in itertools.combinations([j for j in range(p) if j != i], s)
    )


def test_orthonormal_basis_has_zero_coherence():
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    assert mutual_coherence(q.T * 3.0) == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(babel(q.T, 7), torch.zeros(7, dtype=torch.float64), rtol=0, atol=1e-12)


def test_parallel_atoms_have_coherence_one():
    d = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    d[3] = -2.0 * d[1]
    assert mutual_coherence(d) == pytest.approx(1.0, abs=1e-6)


def test_babel_matches_brute_force_and_starts_at_mutual_coherence():
    d = torch.randn(7, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    curve = babel(d, 6)
    assert float(curve[0]) == pytest.approx(mutual_coherence(d), abs=1e-12)
    for s in range(1, 7):
        assert float(curve[s - 1]) == pytest.approx(brute_force_babel(d, s), abs=1e-12)
    assert bool((curve.diff() >= 0).all())
    assert bool((curve <= torch.arange(1, 7) * curve[0] + 1e-12).all())  # μ₁(s) ≤ s·μ


def test_blocked_gram_gives_the_same_answers(monkeypatch):
    d = torch.randn(30, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    mu, curve = mutual_coherence(d), babel(d, 10)
    monkeypatch.setattr(coherence, "_BLOCK_ENTRIES", 30 * 4)  # 4 Gram rows per block
    assert mutual_coherence(d) == mu
    torch.testing.assert_close(babel(d, 10), curve, rtol=0, atol=0)


def test_errors():
    with pytest.raises(ValueError, match="at least 2 atoms"):
        mutual_coherence(torch.randn(1, 4))
    with pytest.raises(ValueError, match="s_max"):
        babel(torch.randn(5, 4), 5)


def test_coherence_recovery_bound():
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    assert coherence_recovery_bound(q.T) == 6.0  # every code of the 6 orthonormal atoms (μ at rounding level)
    equiangular = torch.tensor([[1.0, 0.0], [-0.5, math.sqrt(3) / 2], [-0.5, -math.sqrt(3) / 2]])  # μ = 1/2
    assert coherence_recovery_bound(equiangular) == 1.0  # k < (1 + 2)/2 = 1.5
    d = torch.randn(40, 20, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    mu = mutual_coherence(d)
    bound = coherence_recovery_bound(d)
    assert bound < (1 + 1 / mu) / 2 <= bound + 1 and bound.is_integer()
    d[7] = d[3]
    assert coherence_recovery_bound(d) == 0.0


def test_rip_estimate_of_an_orthonormal_dictionary_is_zero():
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(6), dtype=torch.float64))
    for k in (1, 5, 16):
        estimate = rip_constant_estimate(2.0 * q.T, k, n_supports=200)  # atoms are normalised first
        assert estimate.delta == pytest.approx(0.0, abs=1e-6)
        assert estimate.lambda_min == pytest.approx(1.0, abs=1e-6)
        assert estimate.lambda_max == pytest.approx(1.0, abs=1e-6)


def test_rip_estimate_sees_duplicate_atoms():
    """Orthonormal atoms plus a copy of atom 0: a support holding both has Gram eigenvalues {0, 2, 1, …}, so δ_S = 1
    exactly; every other support is orthonormal, δ_S = 0."""
    d = torch.cat([torch.eye(8, dtype=torch.float64), torch.eye(8, dtype=torch.float64)[:1]])
    for k in (2, 3, 5):
        estimate = rip_constant_estimate(d, k, n_supports=500, generator=torch.Generator().manual_seed(k))
        both = (estimate.supports == 0).any(dim=1) & (estimate.supports == 8).any(dim=1)
        assert bool(both.any()) and bool((~both).any())
        torch.testing.assert_close(
            estimate.samples[both], torch.ones(int(both.sum()), dtype=torch.float64), rtol=0, atol=1e-12
        )
        assert float(estimate.samples[~both].abs().max()) <= 1e-12
        assert estimate.delta == pytest.approx(1.0, abs=1e-12)


def test_rip_estimate_grows_with_k_and_reports_its_sampling_error():
    d = torch.randn(64, 32, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    estimates = [rip_constant_estimate(d, k, n_supports=400) for k in (1, 2, 4, 8, 16)]
    deltas = [e.delta for e in estimates]
    assert deltas[0] == pytest.approx(0.0, abs=1e-12)
    assert all(a < b for a, b in itertools.pairwise(deltas))
    for e in estimates:
        assert e.median <= e.delta and e.samples.shape == (400,) and e.supports.shape == (400, e.k)
        assert e.exceed_probability_bound == pytest.approx(1 - 0.05 ** (1 / 400))
        assert 2.9 / 400 < e.exceed_probability_bound < 3.0 / 400  # the rule of three
        assert bool((e.supports.sort(dim=1).values.diff(dim=1) > 0).all())  # distinct atoms per support
    # the sampled δ̂_k is a lower bound: the exact δ_2 (all C(64, 2) pairs) is the coherence, at least δ̂_2
    assert mutual_coherence(d) >= deltas[1] - 1e-12


def test_rip_estimate_chunks_give_the_same_answer(monkeypatch):
    d = torch.randn(30, 10, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    whole = rip_constant_estimate(d, 4, n_supports=100)
    monkeypatch.setattr(coherence, "_BLOCK_ENTRIES", 4 * 10 * 7)  # 7 supports per chunk
    chunked = rip_constant_estimate(d, 4, n_supports=100)
    torch.testing.assert_close(chunked.samples, whole.samples, rtol=0, atol=1e-12)


def test_rip_estimate_errors():
    with pytest.raises(ValueError, match=r"k must be in \[1, 5\], got 6"):
        rip_constant_estimate(torch.randn(5, 4), 6)
    with pytest.raises(ValueError, match="n_supports must be >= 1"):
        rip_constant_estimate(torch.randn(5, 4), 2, n_supports=0)

"""Mutual coherence and the Babel function of a dictionary with atoms as rows."""

from __future__ import annotations

import itertools

import pytest
import torch

import dictlab.metrics.coherence as coherence
from dictlab.metrics import babel, mutual_coherence


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

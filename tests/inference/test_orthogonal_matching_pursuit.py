"""OMP: exact recovery under Tropp's coherence bound, orthogonal residual, per-sample reference, tol."""

from __future__ import annotations

import pytest
import torch
from scipy.linalg import hadamard

from dictlab.inference import orthogonal_matching_pursuit


def _sparse_codes(n: int, p: int, k: int, g: torch.Generator) -> torch.Tensor:
    z = torch.zeros(n, p, dtype=torch.float64)
    support = torch.rand(n, p, generator=g).argsort(dim=1)[:, :k]
    magnitude = 0.5 + torch.rand(n, k, generator=g, dtype=torch.float64)
    sign = torch.where(torch.rand(n, k, generator=g) < 0.5, -1.0, 1.0).to(torch.float64)
    return z.scatter_(1, support, magnitude * sign)


def _two_bases(m: int = 64) -> torch.Tensor:
    """Identity ∪ normalised Hadamard basis, (2m, m): mutual coherence 1/√m."""
    return torch.cat([torch.eye(m, dtype=torch.float64), torch.from_numpy(hadamard(m)).double() / m**0.5])


def _reference_omp(y: torch.Tensor, d: torch.Tensor, n_nonzero: int, tol: float | None) -> torch.Tensor:
    """Textbook per-sample OMP with a dense least-squares solve each step, float64."""
    unit = d / d.norm(dim=1, keepdim=True)
    codes = torch.zeros(y.shape[0], d.shape[0], dtype=torch.float64)
    for i in range(y.shape[0]):
        support: list[int] = []
        r = y[i].clone()
        for _ in range(n_nonzero):
            if tol is not None and r.norm() <= tol * y[i].norm():
                break
            score = (unit @ r).abs()
            score[support] = float("-inf")
            support.append(int(score.argmax()))
            coef = torch.linalg.lstsq(d[support].T, y[i].unsqueeze(1)).solution.squeeze(1)
            r = y[i] - coef @ d[support]
        if support:
            codes[i, support] = coef
    return codes


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_recovers_every_k_sparse_code_under_the_coherence_bound(k):
    # Union of the identity and the normalised Hadamard basis in R^64: μ = 1/8, so k < (1 + 8)/2 = 4.5.
    m = 64
    d = _two_bases(m)
    gram = d @ d.T
    coherence = float((gram - torch.eye(2 * m, dtype=torch.float64)).abs().max())
    assert k < (1 + 1 / coherence) / 2
    g = torch.Generator().manual_seed(k)
    z = _sparse_codes(200, 2 * m, k, g)
    result = orthogonal_matching_pursuit(z @ d, d, k)
    assert result.n_iter == k
    torch.testing.assert_close(result.codes, z, atol=1e-10, rtol=0)


def test_recovers_with_an_incoherent_random_dictionary():
    g = torch.Generator().manual_seed(11)
    d = torch.randn(20, 3000, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    coherence = float((d @ d.T - torch.eye(20, dtype=torch.float64)).abs().max())
    k = 3
    assert k < (1 + 1 / coherence) / 2
    z = _sparse_codes(100, 20, k, g)
    torch.testing.assert_close(orthogonal_matching_pursuit(z @ d, d, k).codes, z, atol=1e-10, rtol=0)


def test_residual_is_orthogonal_to_every_selected_atom():
    g = torch.Generator().manual_seed(2)
    d = torch.randn(50, 20, generator=g, dtype=torch.float64) * (0.5 + torch.rand(50, 1, generator=g))
    y = torch.randn(40, 20, generator=g, dtype=torch.float64)
    codes = orthogonal_matching_pursuit(y, d, 6).codes
    on = codes != 0
    assert bool((on.sum(dim=1) == 6).all())
    correlations = (y - codes @ d) @ d.T
    torch.testing.assert_close(correlations[on], torch.zeros_like(correlations[on]), atol=1e-9, rtol=0)


@pytest.mark.parametrize("tol", [None, 0.5])
def test_batched_codes_equal_the_per_sample_loop(tol):
    g = torch.Generator().manual_seed(4)
    d = torch.randn(25, 10, generator=g, dtype=torch.float64) * (0.5 + torch.rand(25, 1, generator=g))
    y = torch.randn(30, 10, generator=g, dtype=torch.float64)
    result = orthogonal_matching_pursuit(y, d, 7, tol=tol)
    torch.testing.assert_close(result.codes, _reference_omp(y, d, 7, tol), atol=1e-9, rtol=0)


def test_tol_freezes_each_sample_at_its_own_sparsity():
    g = torch.Generator().manual_seed(8)
    d = _two_bases()  # μ = 1/8: every 4-sparse code is recovered in exactly 4 steps
    z = torch.cat([_sparse_codes(20, 128, 2, g), _sparse_codes(20, 128, 4, g)])
    result = orthogonal_matching_pursuit(z @ d, d, 12, tol=1e-9)
    assert result.converged and result.n_iter == 4
    torch.testing.assert_close(result.codes, z, atol=1e-9, rtol=0)  # the 2-sparse rows took no extra atoms
    capped = orthogonal_matching_pursuit(z @ d, d, 3, tol=1e-9)
    assert capped.n_iter == 3 and not capped.converged
    assert not orthogonal_matching_pursuit(z @ d, d, 4).converged


def test_more_atoms_than_dimensions_stays_finite_and_exact():
    g = torch.Generator().manual_seed(9)
    d = torch.randn(12, 4, generator=g, dtype=torch.float64)
    y = torch.randn(10, 4, generator=g, dtype=torch.float64)
    codes = orthogonal_matching_pursuit(y, d, 8).codes
    assert bool(torch.isfinite(codes).all())
    # Past m steps the residual is ~0 and every score is rounding noise: atoms must still not repeat.
    assert bool(((codes != 0).sum(dim=1) == 8).all())
    torch.testing.assert_close(codes @ d, y, atol=1e-8, rtol=0)


def test_float32_follows_input_and_bad_input_is_rejected():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(30, 15, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    z = _sparse_codes(10, 30, 2, g)
    codes = orthogonal_matching_pursuit((z @ d).float(), d.float(), 2).codes
    assert codes.dtype == torch.float32
    torch.testing.assert_close(codes.double(), orthogonal_matching_pursuit(z @ d, d, 2).codes, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="n_nonzero"):
        orthogonal_matching_pursuit(z @ d, d, 31)
    with pytest.raises(ValueError, match="tol"):
        orthogonal_matching_pursuit(z @ d, d, 2, tol=-1.0)
    with pytest.raises(ValueError, match="dictionary must have 15 columns"):
        orthogonal_matching_pursuit(z @ d, d.T, 2)

"""The coherence guarantee in action: below k < (1 + 1/μ)/2 OMP recovers every k-sparse code exactly
(Tropp 2004, Thm 3.5) — on a spikes-and-Hadamard dictionary (μ = 1/√m), where the bound is 4 at m = 64."""

from __future__ import annotations

import math

import torch

from dictlab.data import SparseCodes, sample_distinct
from dictlab.inference import orthogonal_matching_pursuit
from dictlab.metrics import coherence_recovery_bound, mutual_coherence


def hadamard(m: int) -> torch.Tensor:
    """Sylvester's ±1 Hadamard matrix of order m (a power of 2), float64."""
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < m:
        h = torch.cat([torch.cat([h, h], dim=1), torch.cat([h, -h], dim=1)])
    return h


def spikes_and_sines(m: int) -> torch.Tensor:
    """(2m, m): the standard basis stacked on the normalised Hadamard basis; every cross inner product is ±1/√m."""
    return torch.cat([torch.eye(m, dtype=torch.float64), hadamard(m) / math.sqrt(m)])


def test_spikes_and_hadamard_coherence_and_bound():
    d = spikes_and_sines(64)
    assert mutual_coherence(d) == 1 / 8
    assert coherence_recovery_bound(d) == 4.0  # k < (1 + 8)/2 = 4.5
    assert coherence_recovery_bound(spikes_and_sines(16)) == 2.0  # k < (1 + 4)/2 = 2.5


def test_omp_recovers_every_code_below_the_coherence_bound():
    """4-sparse codes on random supports (mixing spikes and Hadamard atoms) with random signs and magnitudes
    spanning three decades: OMP with 4 steps returns each exactly (float64, to 1e-8)."""
    d = spikes_and_sines(64)
    k = int(coherence_recovery_bound(d))
    generator = torch.Generator().manual_seed(0)
    n = 3000
    indices = sample_distinct(n, k, d.shape[0], generator)
    magnitudes = 10 ** (3 * torch.rand(n, k, generator=generator, dtype=torch.float64) - 1.5)
    signs = 2.0 * torch.randint(0, 2, (n, k), generator=generator, dtype=torch.float64) - 1.0
    codes = SparseCodes(indices, magnitudes * signs, d.shape[0])
    truth = codes.to_dense()
    estimate = orthogonal_matching_pursuit(codes.decode(d), d, k).codes
    assert float((estimate - truth).abs().max()) <= 1e-8
    # the hard supports are there: spikes and Hadamard atoms together
    mixed = ((indices < 64).any(dim=1) & (indices >= 64).any(dim=1)).sum()
    assert int(mixed) > n // 2


def test_uniqueness_fails_at_sqrt_m_within_a_factor_two_of_the_bound():
    """Donoho & Huo's example: a spike comb and its Hadamard image are two √m-sparse codes (8 atoms each at
    m = 64) of one signal, so no method can recover every 8-sparse code — the guaranteed k ≤ 4 is within a
    factor of two of what is possible on this dictionary."""
    m = 64
    d = spikes_and_sines(m)
    comb = torch.zeros(m, dtype=torch.float64)
    comb[::8] = 1.0  # its Hadamard transform is again a comb of 8 spikes
    hadamard_coefficients = comb @ hadamard(m).T / math.sqrt(m)  # y in the normalised Hadamard basis
    assert int((hadamard_coefficients.abs() > 1e-12).sum()) == 8
    z_spikes = torch.cat([comb, torch.zeros(m, dtype=torch.float64)])
    z_sines = torch.cat([torch.zeros(m, dtype=torch.float64), hadamard_coefficients])
    torch.testing.assert_close(z_spikes @ d, z_sines @ d, rtol=0, atol=1e-12)  # two 8-sparse codes, one signal

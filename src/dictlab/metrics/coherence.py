"""Coherence of a dictionary D (p, m), atoms as rows, all measured on unit-normalised atoms.

mutual coherence μ = max_{i≠j} |⟨d_i, d_j⟩| / (‖d_i‖‖d_j‖) (Donoho & Huo 2001);
Babel function μ₁(s) = max_i max_{|Λ|=s, i∉Λ} Σ_{j∈Λ} |⟨d_i, d_j⟩| (Tropp 2004, "Greed is good"), whose
inner maximum is the sum of the s largest off-diagonal |G_ij| of row i. μ₁(1) = μ. In Tropp's column
form the atoms are the columns of Φ = D.T. Zero atoms (norm < 1e-8) have cosine 0 with every atom.

What they guarantee: ``coherence_recovery_bound`` (k < (1 + 1/μ)/2: ℓ1 and OMP recover every k-sparse code), and a
sampled restricted isometry constant ``rip_constant_estimate`` (a lower bound on δ_k, with its sampling error).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from dictlab.data.sampling import sample_distinct
from dictlab.metrics.inputs import ArrayLike, as_matrix
from dictlab.validation import check_int_range

NORM_FLOOR = 1e-8
# Gram rows formed per block: bounds the transient (block, p) matrix to ~16M entries at any p.
_BLOCK_ENTRIES = 1 << 24


def _unit_atoms(dictionary: ArrayLike) -> torch.Tensor:
    d = as_matrix("dictionary", dictionary)
    if d.shape[0] < 2:
        raise ValueError(f"coherence needs at least 2 atoms (rows), got dictionary of shape {tuple(d.shape)}")
    return d / torch.linalg.vector_norm(d, dim=1, keepdim=True).clamp_min(NORM_FLOOR)


def _offdiagonal_abs_gram(unit: torch.Tensor) -> Iterator[torch.Tensor]:
    """Blocks of rows of |G| = |D̂D̂ᵀ| with the diagonal set to −1 (below every |cosine|)."""
    p = unit.shape[0]
    block = max(1, _BLOCK_ENTRIES // p)
    for start in range(0, p, block):
        rows = (unit[start : start + block] @ unit.T).abs_()
        idx = torch.arange(rows.shape[0], device=unit.device)
        rows[idx, idx + start] = -1.0
        yield rows


def mutual_coherence(dictionary: ArrayLike) -> float:
    """μ(D) for D (p, m), p ≥ 2; 0 for orthogonal atoms, 1 when two atoms are parallel."""
    unit = _unit_atoms(dictionary)
    return float(max(float(rows.amax()) for rows in _offdiagonal_abs_gram(unit)))


def babel(dictionary: ArrayLike, s_max: int) -> torch.Tensor:
    """(s_max,) Babel curve μ₁(1), …, μ₁(s_max) of D (p, m), 1 ≤ s_max ≤ p − 1, in the dictionary's dtype."""
    unit = _unit_atoms(dictionary)
    check_int_range("s_max", s_max, 1, unit.shape[0] - 1)
    curve = torch.zeros(s_max, dtype=unit.dtype, device=unit.device)
    for rows in _offdiagonal_abs_gram(unit):
        top = rows.topk(s_max, dim=1, sorted=True).values.cumsum(dim=1)
        curve = torch.maximum(curve, top.amax(dim=0))
    return curve


def coherence_recovery_bound(dictionary: ArrayLike) -> float:
    """The largest sparsity k that mutual coherence alone guarantees: the largest integer k < (1 + 1/μ)/2, at most p.

    Below this bound every k-sparse code z is the unique sparsest code of y = z D, and both basis pursuit (ℓ1
    minimisation) and OMP recover it exactly (Donoho & Elad 2003; Tropp 2004, "Greed is good", Thm 3.5, in the
    column form Φ = D.T). A sufficient condition only: random dictionaries recover far denser codes in practice.
    Orthogonal atoms (μ = 0, or μ at rounding level) give p; two parallel atoms (μ = 1) give 0. A float.
    """
    unit = _unit_atoms(dictionary)
    p = unit.shape[0]
    mu = mutual_coherence(unit)
    if mu <= 0.0 or (1.0 + 1.0 / mu) / 2.0 > p:
        return float(p)
    return float(math.ceil((1.0 + 1.0 / mu) / 2.0) - 1)


@dataclass(frozen=True)
class RIPEstimate:
    """A sampled estimate of the restricted isometry constant δ_k of a dictionary (see ``rip_constant_estimate``).

    k : support size. n_supports : supports sampled.
    delta : δ̂_k = max over the sampled supports of δ_S — a LOWER bound on δ_k.
    median : the median δ_S over the samples (a typical support, not the worst).
    exceed_probability_bound : 1 − 0.05^(1/n): with 95 % confidence, the fraction of all supports of size k whose
        δ_S exceeds ``delta`` is below this (≈ 3/n, the "rule of three"). It says nothing about how far above.
    lambda_min, lambda_max : the extreme eigenvalues of D_S D_Sᵀ seen over the samples.
    samples : (n_supports,) δ_S of every sampled support, in the dictionary's dtype.
    supports : (n_supports, k) int64, the sampled supports (atom indices).
    """

    k: int
    n_supports: int
    delta: float
    median: float
    exceed_probability_bound: float
    lambda_min: float
    lambda_max: float
    samples: torch.Tensor = field(repr=False)
    supports: torch.Tensor = field(repr=False)


def rip_constant_estimate(
    dictionary: ArrayLike, k: int, n_supports: int = 1000, generator: torch.Generator | None = None
) -> RIPEstimate:
    """Sampled restricted isometry constant of D (p, m) at sparsity k, atoms unit-normalised.

    δ_k is the smallest δ with (1 − δ)‖z‖² ≤ ‖z D‖² ≤ (1 + δ)‖z‖² for every k-sparse z (Candès & Tao 2005; in
    their column form A = D.T), i.e. δ_k = max_{|S| = k} δ_S with

        δ_S = max(λ_max(D_S D_Sᵀ) − 1, 1 − λ_min(D_S D_Sᵀ)),

    D_S (k, m) the atoms of S. Computing δ_k exactly maximises over all C(p, k) supports (NP-hard in general);
    this draws ``n_supports`` supports uniformly at random (``sample_distinct``, from ``generator``; default a
    generator seeded with 0) and takes the eigenvalues of their k×k Gram matrices (batched
    ``torch.linalg.eigvalsh``, in chunks that bound the gathered atoms to ~16M entries).

    Caveat: δ̂_k = max over the samples is a LOWER bound on δ_k — the worst supports are rare and random
    sampling does not find them (for a random dictionary δ̂_k is usually far below δ_k). What the sample does
    bound is the fraction of supports worse than δ̂_k: ``exceed_probability_bound`` = 1 − 0.05^(1/n) at 95 %
    confidence. k > m gives λ_min = 0, hence δ_S ≥ 1.
    """
    unit = _unit_atoms(dictionary)
    p, m = unit.shape
    check_int_range("k", k, 1, p)
    check_int_range("n_supports", n_supports, 1)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    supports = sample_distinct(n_supports, k, p, generator).to(unit.device)
    chunk = max(1, _BLOCK_ENTRIES // (k * m))
    low, high = [], []
    for start in range(0, n_supports, chunk):
        atoms = unit[supports[start : start + chunk]]  # (c, k, m)
        eigenvalues = torch.linalg.eigvalsh(atoms @ atoms.transpose(1, 2))  # (c, k), ascending
        low.append(eigenvalues[:, 0])
        high.append(eigenvalues[:, -1])
    lambda_min, lambda_max = torch.cat(low), torch.cat(high)
    samples = torch.maximum(lambda_max - 1.0, 1.0 - lambda_min)
    return RIPEstimate(
        k=k,
        n_supports=n_supports,
        delta=float(samples.max()),
        median=float(samples.median()),
        exceed_probability_bound=1.0 - 0.05 ** (1.0 / n_supports),
        lambda_min=float(lambda_min.min()),
        lambda_max=float(lambda_max.max()),
        samples=samples,
        supports=supports,
    )

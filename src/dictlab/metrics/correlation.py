"""Mean correlation coefficient (MCC) between true latents and learned codes.

    MCC(Z, C) = (1/a) Σ_i |ρ(z_i, c_π(i))|,

with ρ the Pearson correlation of columns, z_i the a true latents (N,) and π the one-to-one matching of true
latents to code units that maximises Σ|ρ| (Hungarian algorithm). This is the identifiability score of
nonlinear ICA (Hyvärinen & Morioka 2016; Khemakhem et al. 2020) as used by the compositional-OOD study
(arXiv 2603.28744). The study's exact, slightly different protocols live in ``dictlab.metrics.study_mcc``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from dictlab.data import SparseCodes
from dictlab.metrics.inputs import ArrayLike, as_dense_codes, as_matrix
from dictlab.metrics.matching import max_weight_assignment

# float64 code columns standardised per matmul block; bounds the transient memory at any width.
_BLOCK_BYTES = 1 << 26
# Below this fraction of non-zeros the true codes are multiplied as a sparse matrix (k-sparse latents).
_SPARSE_DENSITY = 0.1
# A latent whose variance in a split is at or below this never moved there: it carries no correlation.
ACTIVE_VARIANCE = 1e-12


class MCCResult(NamedTuple):
    """MCC of a true (N, a) against codes (N, b).

    mcc : mean over the a true latents of the matched |ρ| (a latent left unmatched, when b < a, counts 0).
    per_latent : (a,) float64, matched |ρ| per true latent.
    assignment : (a,) long, code unit matched to each true latent, -1 if none.
    true_latents : (a,) long, the column of the caller's true matrix each entry refers to (``split_mcc``
        drops inactive latents, so entry i is latent ``true_latents[i]``).
    """

    mcc: float
    per_latent: torch.Tensor
    assignment: torch.Tensor
    true_latents: torch.Tensor

    def as_dict(self) -> dict[str, float]:
        return {"mcc": self.mcc}


def _mean_and_scale(x: torch.Tensor, study_floor: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Column mean and factor s (1, c), float64, with standardised columns (x − mean)·s."""
    var, mean = torch.var_mean(x, dim=0, correction=0, keepdim=True)
    norm = (var * x.shape[0]).sqrt_()
    if study_floor:
        return mean, 1.0 / torch.where(norm < 1e-8, torch.ones_like(norm), norm)
    low, high = torch.aminmax(x, dim=0, keepdim=True)
    return mean, (1.0 / norm.clamp_min(torch.finfo(torch.float64).tiny)).masked_fill_(low == high, 0.0)


def standardized_columns(x: torch.Tensor, *, study_floor: bool = False) -> torch.Tensor:
    """(N, c) float64 columns centred and scaled to unit L2 norm, so that ``ẑᵀ ĉ`` is Pearson's ρ.

    Constant columns (max = min) become 0, hence ρ = 0 with anything. ``study_floor=True`` reproduces
    the study instead: a centred column of norm < 1e-8 is divided by 1.
    """
    x = x.to(torch.float64)
    mean, scale = _mean_and_scale(x, study_floor)
    return (x - mean).mul_(scale)


def abs_correlation(true: ArrayLike, codes: ArrayLike, *, study_floor: bool = False) -> torch.Tensor:
    """|ρ| matrix (a, b) float64 between the columns of true (N, a) and codes (N, b), on their device.

    Computed in float64 in column blocks of the codes (memory: the a×b result plus ~64 MB). Because the
    standardised code columns sum to zero, ẑᵀĉ = (z·s)ᵀĉ without centring z, so k-sparse true codes
    (density < 10 %) are multiplied as a sparse matrix: cost N·k·b instead of N·a·b flops.
    """
    true = as_matrix("true", true).to(torch.float64)
    codes = as_matrix("codes", codes, rows=true.shape[0]).to(true.device)
    n = true.shape[0]
    mean, scale = _mean_and_scale(true, study_floor)
    density = float(torch.count_nonzero(true)) / max(true.numel(), 1)
    if density < _SPARSE_DENSITY:
        left = true.T.to_sparse()
        left.values().mul_(scale[0, left.indices()[0]])
    else:
        left = ((true - mean) * scale).T.contiguous()
    block = max(1, _BLOCK_BYTES // (8 * max(n, 1)))
    out = torch.empty(true.shape[1], codes.shape[1], dtype=torch.float64, device=true.device)
    for start in range(0, codes.shape[1], block):
        stop = min(start + block, codes.shape[1])
        right = standardized_columns(codes[:, start:stop], study_floor=study_floor)
        out[:, start:stop] = left @ right
    return out.abs_()


def mcc(true_codes: ArrayLike, codes: ArrayLike) -> MCCResult:
    """MCC of codes (N, b) against the true latents (N, a); see the module docstring.

    Every column of ``true_codes`` counts (pass only latents active in the split, or use ``split_mcc``).
    Cost: the |ρ| matrix (N·a·b flops, or N·k·b for k-sparse truth) plus the O(a²b) Hungarian matching.
    Measured on 2 busy CPU cores, N = 2500: a = b = 1000 takes ~0.3 s in all (matching 0.01–0.1 s);
    a = b = 10,000 takes ~10 s for |ρ| plus 4 s (near-permuted codes) to 25 s (random codes) of
    matching, with 800 MB for the float64 a×b matrix.
    """
    true = as_matrix("true_codes", true_codes)
    pred = as_matrix("codes", codes, rows=true.shape[0]).to(true.device)
    if true.shape[1] == 0 or pred.shape[1] == 0:
        raise ValueError(f"mcc needs at least one true latent and one code unit, got shapes {tuple(true.shape)}, {tuple(pred.shape)}")
    if true.shape[0] < 2:
        raise ValueError(f"mcc needs at least 2 samples to correlate, got {true.shape[0]}")
    corr = abs_correlation(true, pred)
    assignment = max_weight_assignment(corr)
    matched = assignment >= 0
    per_latent = torch.zeros(true.shape[1], dtype=torch.float64, device=corr.device)
    rows = matched.nonzero().squeeze(1)
    per_latent[rows] = corr[rows, assignment[rows]]
    latents = torch.arange(true.shape[1], device=corr.device)
    return MCCResult(float(per_latent.mean()), per_latent, assignment, latents)


def active_latents(true: ArrayLike, threshold: float = ACTIVE_VARIANCE) -> torch.Tensor:
    """(a,) long indices of the columns of true (N, p) whose (population) variance exceeds ``threshold``."""
    return (as_matrix("true", true).to(torch.float64).var(dim=0, correction=0) > threshold).nonzero().squeeze(1)


def split_mcc(true: SparseCodes | ArrayLike, codes: ArrayLike) -> MCCResult:
    """MCC of codes (N, q) against the true latents (N, p) that vary in this split (variance > 1e-12).

    ``true`` may be ``SparseCodes`` (densified, fine for p ≤ 10,000). ``true_latents`` in the result names
    the kept latents. A latent that never fires in the split has no correlation to recover.
    """
    dense = as_dense_codes("true", true).to(torch.float64)
    keep = active_latents(dense)
    if keep.numel() == 0:
        raise ValueError("no true latent varies in this split (all variances <= 1e-12); MCC is undefined")
    result = mcc(dense[:, keep], codes)
    return result._replace(true_latents=keep)


def mcc_chance(true: SparseCodes | ArrayLike, codes: ArrayLike, generator: torch.Generator) -> float:
    """``split_mcc`` after a random permutation of the rows of codes: the chance floor of the MCC.

    Permuting samples keeps every code unit's marginal distribution but breaks its link to the truth, so
    this is what the matching alone scores on unrelated codes of the same shape (of order √(ln b / N)).
    """
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    pred = as_matrix("codes", codes)
    perm = torch.randperm(pred.shape[0], generator=generator, device=generator.device).to(pred.device)
    return split_mcc(true, pred[perm]).mcc

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
    x = x.to(torch.float64)
    var, mean = torch.var_mean(x, dim=0, correction=0, keepdim=True)
    norm = (var * x.shape[0]).sqrt_()
    if study_floor:
        return mean, 1.0 / torch.where(norm < 1e-8, torch.ones_like(norm), norm)
    low, high = torch.aminmax(x, dim=0, keepdim=True)
    return mean, (1.0 / norm.clamp_min(torch.finfo(torch.float64).tiny)).masked_fill_(low == high, 0.0)


def _block_width(n: int) -> int:
    """Columns of an (n, ·) float64 block that fit in ``_BLOCK_BYTES``."""
    return max(1, _BLOCK_BYTES // (8 * max(n, 1)))


def _code_statistics(codes: torch.Tensor, study_floor: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``_mean_and_scale`` of codes (N, b), one column block at a time (float64 copies stay ~64 MB)."""
    n, b = codes.shape
    width = _block_width(n)
    parts = [_mean_and_scale(codes[:, i : i + width], study_floor) for i in range(0, b, width)]
    return torch.cat([m for m, _ in parts], dim=1), torch.cat([s for _, s in parts], dim=1)


def _true_operand(true: torch.Tensor, study_floor: bool) -> torch.Tensor:
    """(a, N) float64 left factor L of the correlations, ``L @ standardized(codes) = ρ`` for true (N, a).

    Because standardised code columns sum to zero, the true columns need scaling but no centring, so
    k-sparse truth (density < 10 %) stays sparse: cost N·k·b instead of N·a·b flops.
    """
    true = true.to(torch.float64)
    mean, scale = _mean_and_scale(true, study_floor)
    density = float(torch.count_nonzero(true)) / max(true.numel(), 1)
    if density < _SPARSE_DENSITY:
        left = true.T.to_sparse()
        left.values().mul_(scale[0, left.indices()[0]])
        return left
    return ((true - mean) * scale).T.contiguous()


def _correlate(left: torch.Tensor, codes: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """|ρ| (a, b) = |L @ standardized(codes)|, the codes standardised in column blocks with ``stats``."""
    mean, scale = stats
    n, b = codes.shape
    out = torch.empty(left.shape[0], b, dtype=torch.float64, device=codes.device)
    width = _block_width(n)
    for start in range(0, b, width):
        stop = min(start + width, b)
        right = (codes[:, start:stop].to(torch.float64) - mean[:, start:stop]).mul_(scale[:, start:stop])
        out[:, start:stop] = left @ right
    return out.abs_()


def abs_correlation(true: ArrayLike, codes: ArrayLike, *, study_floor: bool = False) -> torch.Tensor:
    """|ρ| matrix (a, b) float64 between the columns of true (N, a) and codes (N, b), on their device.

    Computed in float64 in column blocks of the codes (memory: the a×b result plus ~64 MB); k-sparse true
    codes (density < 10 %) are multiplied as a sparse matrix (``_true_operand``).
    """
    true = as_matrix("true", true)
    codes = as_matrix("codes", codes, rows=true.shape[0]).to(true.device)
    return _correlate(_true_operand(true, study_floor), codes, _code_statistics(codes, study_floor))


def _matched(corr: torch.Tensor, latents: torch.Tensor) -> MCCResult:
    """The MCC of a |ρ| matrix (a, b): Hungarian matching of its rows (true latents) to columns (units)."""
    assignment = max_weight_assignment(corr)
    matched = assignment >= 0
    per_latent = torch.zeros(corr.shape[0], dtype=torch.float64, device=corr.device)
    rows = matched.nonzero().squeeze(1)
    per_latent[rows] = corr[rows, assignment[rows]]
    return MCCResult(float(per_latent.mean()), per_latent, assignment, latents)


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
        raise ValueError(
            f"mcc needs at least one true latent and one code unit, got shapes {tuple(true.shape)}, {tuple(pred.shape)}"
        )
    if true.shape[0] < 2:
        raise ValueError(f"mcc needs at least 2 samples to correlate, got {true.shape[0]}")
    corr = abs_correlation(true, pred)
    return _matched(corr, torch.arange(true.shape[1], device=corr.device))


def active_latents(true: ArrayLike, threshold: float = ACTIVE_VARIANCE) -> torch.Tensor:
    """(a,) long indices of the columns of true (N, p) whose (population) variance exceeds ``threshold``."""
    return (as_matrix("true", true).to(torch.float64).var(dim=0, correction=0) > threshold).nonzero().squeeze(1)


def _sparse_true_operand(true: SparseCodes, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, N) sparse float64 ``L`` and the a latents (variance > threshold) of k-sparse true codes, built
    from their (indices, values) without densifying: column means and variances by scatter-add."""
    n, p = len(true), true.num_latents
    index = true.indices.reshape(-1)
    values = true.values.reshape(-1).to(torch.float64)
    total = torch.zeros(p, dtype=torch.float64, device=values.device).index_add_(0, index, values)
    mean = total / n
    # two-pass variance: Σ over the stored entries of (v − mean)², plus the zeros' (n − count)·mean²
    count = torch.zeros_like(total).index_add_(0, index, torch.ones_like(values))
    centred = torch.zeros_like(total).index_add_(0, index, (values - mean[index]).square())
    variance = (centred + (n - count) * mean.square()) / n
    keep = variance > threshold
    latents = keep.nonzero().squeeze(1)
    position = torch.full((p,), -1, dtype=torch.long, device=values.device)
    position[latents] = torch.arange(latents.numel(), device=values.device)
    samples = torch.arange(n, device=values.device).repeat_interleave(true.k)
    kept = keep[index] & (values != 0)
    scale = 1.0 / (variance * n).sqrt()
    entries = torch.stack([position[index[kept]], samples[kept]])
    left = torch.sparse_coo_tensor(
        entries, values[kept] * scale[index[kept]], (latents.numel(), n), check_invariants=True
    ).coalesce()
    return left, latents


def _split_operand(true: SparseCodes | ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """The left correlation factor (a, N) over the latents active in the split, and those latents (a,)."""
    if isinstance(true, SparseCodes):
        left, keep = _sparse_true_operand(true, ACTIVE_VARIANCE)
    else:
        dense = as_dense_codes("true", true).to(torch.float64)
        keep = active_latents(dense)
        left = _true_operand(dense[:, keep], study_floor=False) if keep.numel() else dense.new_zeros(0, dense.shape[0])
    if keep.numel() == 0:
        raise ValueError("no true latent varies in this split (all variances <= 1e-12); MCC is undefined")
    return left, keep


def _permuted_samples(left: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """L with sample n moved to column ``perm[n]``: ``L' @ Ĉ = L @ Ĉ[perm]``, the truth of permuted codes."""
    if left.is_sparse:
        rows, cols = left.indices()
        return torch.sparse_coo_tensor(
            torch.stack([rows, perm[cols]]), left.values(), left.shape, check_invariants=True
        ).coalesce()
    out = torch.empty_like(left)
    out[:, perm] = left
    return out


def split_mcc_with_chance(
    true: SparseCodes | ArrayLike, codes: ArrayLike, generator: torch.Generator
) -> tuple[MCCResult, float]:
    """``split_mcc(true, codes)`` and ``mcc_chance(true, codes, generator)`` together, sharing the
    standardisation of both sides (the chance floor permutes the truth's samples instead of the codes')."""
    _check_generator(generator)
    left, keep, pred, stats = _split_inputs(true, codes)
    return _matched(_correlate(left, pred, stats), keep), _chance(left, keep, pred, stats, generator)


def _check_generator(generator: torch.Generator) -> None:
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")


def _chance(
    left: torch.Tensor,
    keep: torch.Tensor,
    pred: torch.Tensor,
    stats: tuple[torch.Tensor, torch.Tensor],
    generator: torch.Generator,
) -> float:
    perm = torch.randperm(pred.shape[0], generator=generator, device=generator.device).to(pred.device)
    return _matched(_correlate(_permuted_samples(left, perm), pred, stats), keep).mcc


def _split_inputs(
    true: SparseCodes | ArrayLike, codes: ArrayLike
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    rows = len(true) if isinstance(true, SparseCodes) else None
    pred = as_matrix("codes", codes, rows=rows)
    left, keep = _split_operand(true)
    if left.shape[1] != pred.shape[0]:
        raise ValueError(f"codes must have {left.shape[1]} rows (one per sample of the truth), got {pred.shape[0]}")
    if pred.shape[1] == 0:
        raise ValueError(f"mcc needs at least one code unit, got codes of shape {tuple(pred.shape)}")
    if pred.shape[0] < 2:
        raise ValueError(f"mcc needs at least 2 samples to correlate, got {pred.shape[0]}")
    pred = pred.to(left.device)
    return left, keep, pred, _code_statistics(pred, study_floor=False)


def split_mcc(true: SparseCodes | ArrayLike, codes: ArrayLike) -> MCCResult:
    """MCC of codes (N, q) against the true latents (N, p) that vary in this split (variance > 1e-12).

    ``true`` may be ``SparseCodes``: then it is never densified (its column statistics come from the
    (indices, values) pairs), so this scales to any p. ``true_latents`` in the result names the kept
    latents. A latent that never fires in the split has no correlation to recover.
    """
    left, keep, pred, stats = _split_inputs(true, codes)
    return _matched(_correlate(left, pred, stats), keep)


def mcc_chance(true: SparseCodes | ArrayLike, codes: ArrayLike, generator: torch.Generator) -> float:
    """``split_mcc`` after a random permutation of the rows of codes: the chance floor of the MCC.

    Permuting samples keeps every code unit's marginal distribution but breaks its link to the truth, so
    this is what the matching alone scores on unrelated codes of the same shape (of order √(ln b / N)).
    """
    _check_generator(generator)
    return _chance(*_split_inputs(true, codes), generator)

"""The compositional-OOD study's two MCC protocols, reproduced for like-for-like comparison.

STUDY-SPEC §3.1 (utils/metrics.py of shrutij01/compositional-sparse-ood): the narrower of T (N, a) and
P (N, b) is padded with |a − b| N(0, 1) columns from a fresh ``numpy.random.RandomState(42)``; columns are
centred and divided by their norm (norm < 1e-8: by 1); Hungarian matching on |TᵀP|; the score is the mean
|ρ| over all max(a, b) matched pairs, padded ones included. Unlike ``dictlab.metrics.mcc`` it is therefore
not a mean over true latents: padded noise pairs add ~0 (T narrower) or a chance-level |ρ| (P narrower).

Differences from the study that remain: correlations are computed in float64 (the study mixed float32
codes with float64 truth: ~1e-7), and ties in the OOD variance ranking are broken by a stable sort.
"""

from __future__ import annotations

import numpy as np
import torch

from dictlab.data import SparseCodes
from dictlab.metrics.correlation import abs_correlation, active_latents
from dictlab.metrics.inputs import ArrayLike, as_dense_codes, as_matrix
from dictlab.metrics.matching import max_weight_assignment

STUDY_ACTIVE_VARIANCE = 1e-8
STUDY_PADDING_SEED = 42


def _study_core(true: torch.Tensor, pred: torch.Tensor) -> float:
    """The study's ``compute_mcc(T, P)`` with its noise padding; T (N, a), P (N, b)."""
    n, a, b = true.shape[0], true.shape[1], pred.shape[1]
    corr = abs_correlation(true, pred, study_floor=True)
    if a != b:
        noise = np.random.RandomState(STUDY_PADDING_SEED).normal(0, 1, (n, abs(a - b)))
        noise_t = torch.from_numpy(noise).to(true.device)
        if a < b:
            corr = torch.cat([corr, abs_correlation(noise_t, pred, study_floor=True)], dim=0)
        else:
            corr = torch.cat([corr, abs_correlation(true, noise_t, study_floor=True)], dim=1)
    assignment = max_weight_assignment(corr)
    return float(corr.gather(1, assignment.unsqueeze(1)).mean())


def _study_inputs(true: SparseCodes | ArrayLike, codes: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    dense = as_dense_codes("true", true)
    pred = as_matrix("codes", codes, rows=dense.shape[0]).to(dense.device)
    keep = active_latents(dense, STUDY_ACTIVE_VARIANCE)
    if keep.numel() == 0 or pred.shape[1] == 0:
        raise ValueError("the study MCC needs at least one true latent with variance > 1e-8 and one code unit")
    return dense[:, keep], pred


def mcc_study_id(true_dense_val: SparseCodes | ArrayLike, codes_val: ArrayLike) -> float:
    """The study's ``mcc_iid``: T = val latents with variance > 1e-8 (N, a), P = all code columns (N, b)."""
    true, pred = _study_inputs(true_dense_val, codes_val)
    return _study_core(true, pred)


def mcc_study_ood(true_dense_ood: SparseCodes | ArrayLike, codes_ood: ArrayLike) -> float:
    """The study's ``mcc_ood``: T = OOD latents with variance > 1e-8 (a of them), P = the a code columns
    with the largest variance on the OOD codes (all of them if there are fewer)."""
    true, pred = _study_inputs(true_dense_ood, codes_ood)
    variance = pred.to(torch.float64).var(dim=0, correction=0)
    top = torch.sort(variance, descending=True, stable=True).indices[: true.shape[1]]
    return _study_core(true, pred[:, top])

"""Reconstruction quality and sparsity of codes: MSE, R² (fraction of variance explained), L0."""

from __future__ import annotations

import torch

from dictlab.metrics.inputs import ArrayLike, as_matrix
from dictlab.validation import check_positive

L0_THRESHOLD = 1e-4


def _pair(y: ArrayLike, y_hat: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    target = as_matrix("y", y)
    estimate = as_matrix("y_hat", y_hat, rows=target.shape[0], cols=target.shape[1]).to(target.device)
    if target.numel() == 0:
        raise ValueError("y is empty; reconstruction error needs at least one entry")
    return target.to(torch.float64), estimate.to(torch.float64)


def mse(y: ArrayLike, y_hat: ArrayLike) -> float:
    """Mean squared error over all entries of y (N, m) and its reconstruction y_hat (N, m)."""
    target, estimate = _pair(y, y_hat)
    return float((target - estimate).square().mean())


def r2(y: ArrayLike, y_hat: ArrayLike) -> float:
    """R² = 1 − Σ(y − ŷ)² / Σ(y − ȳ)², ȳ the per-dimension (column) mean of y (N, m).

    Also called fraction of variance explained (SAELens's ``explained_variance`` averages it per sample
    instead); 1 is perfect, 0 is predicting the mean, negative is worse than that.
    """
    target, estimate = _pair(y, y_hat)
    total = (target - target.mean(dim=0, keepdim=True)).square().sum()
    if total == 0:
        raise ValueError("y has zero variance in every dimension; R² is undefined (use mse)")
    return float(1.0 - (target - estimate).square().sum() / total)


def l0(codes: ArrayLike, threshold: float = L0_THRESHOLD) -> float:
    """Mean number of entries with |z| > threshold per sample of codes (N, p). (The study's SAE logs used 0.01.)"""
    z = as_matrix("codes", codes)
    check_positive("threshold", threshold, allow_zero=True)
    if z.shape[0] == 0:
        raise ValueError("codes has no samples; L0 needs at least one row")
    return float((z.abs() > threshold).sum(dim=1).to(torch.float64).mean())

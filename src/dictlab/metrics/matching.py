"""One-to-one matching of true latents (rows) to learned units (columns) by the Hungarian algorithm."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment


def max_weight_assignment(score: torch.Tensor) -> torch.Tensor:
    """The one-to-one matching of rows to columns maximising the total score.

    ``score`` is (a, b); returns (a,) long on the same device: the column matched to each row, -1 for the
    a − b rows left unmatched when b < a. Solved by scipy's ``linear_sum_assignment`` (shortest augmenting
    paths, Crouse 2016) on a float64 CPU copy: O(a²·b) worst case, about 0.1 s at 1000×1000 and tens of
    seconds at 10,000×10,000 (a dense float64 copy of 800 MB).
    """
    if score.ndim != 2:
        raise ValueError(f"score must be a 2-D (rows, columns) matrix, got shape {tuple(score.shape)}")
    rows, cols = linear_sum_assignment(score.detach().to("cpu", torch.float64).numpy(), maximize=True)
    assignment = torch.full((score.shape[0],), -1, dtype=torch.long)
    assignment[torch.from_numpy(rows)] = torch.from_numpy(cols).long()
    return assignment.to(score.device)


def check_assignment(assignment: torch.Tensor, n_true: int, n_units: int) -> torch.Tensor:
    """Validate an (n_true,) long assignment with entries in [-1, n_units) and distinct matched units."""
    if not isinstance(assignment, torch.Tensor) or assignment.ndim != 1 or assignment.dtype != torch.long:
        raise ValueError("assignment must be a 1-D torch.long tensor (the matched unit per true latent, -1 if none)")
    if assignment.shape[0] != n_true:
        raise ValueError(f"assignment must have one entry per true latent ({n_true}), got {assignment.shape[0]}")
    matched = assignment[assignment >= 0]
    if (assignment < -1).any() or (matched >= n_units).any():
        raise ValueError(
            f"assignment entries must be -1 or a unit index in [0, {n_units}), got {assignment.tolist()[:10]}…"
        )
    if matched.unique().numel() != matched.numel():
        raise ValueError("assignment must match each unit to at most one true latent; got repeated units")
    if matched.numel() == 0:
        raise ValueError("assignment matches no true latent to any unit; nothing to measure")
    return assignment

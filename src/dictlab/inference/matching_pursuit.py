"""Matching pursuit (Mallat & Zhang 1993), batched and differentiable, as unrolled in MP-SAE.

For every row y of Y (N, m) and a dictionary D (p, m) with unit-norm atoms as rows, repeat T times
(Algorithm 1 of Costa et al. 2025, "Evaluating Sparse Autoencoders: From Shallow Design to Matching
Pursuit"):

    s = r Dᵀ  (N, p);   j = argmax_j s_j  (or |s_j|);   z_j += s_j;   r ← r − s_j D_j

starting from r = y, z = 0. In the paper's column form ``y = A z`` the dictionary is ``A = D.T``.
The residual never grows: ‖r − s_j D_j‖² = ‖r‖² − s_j² for a unit-norm atom, and the new residual is
orthogonal to D_j.

Gradients flow to ``y`` and ``dictionary`` through the selected correlations s_j = r·D_j (the argmax itself
is piecewise constant), so an MP-SAE can learn its dictionary through this function. The (N, p) correlations
serve only the selection and are computed without autograd, so the backward pass costs O(T·N·m). Every op
that touches a tensor requiring grad is out of place; the codes are assembled by one ``scatter_add``.
"""

from __future__ import annotations

import torch

from dictlab.inference.proximal_gradient import SolverResult
from dictlab.validation import check_int_range, check_matrix, check_positive

UNIT_NORM_TOLERANCE = 1e-3


def check_unit_rows(name: str, dictionary: torch.Tensor, tolerance: float = UNIT_NORM_TOLERANCE) -> None:
    """Raise ValueError unless every row of ``dictionary`` has Euclidean norm within ``tolerance`` of 1."""
    norms = torch.linalg.vector_norm(dictionary.detach(), dim=1)
    deviation = (norms - 1).abs()
    worst = int(deviation.argmax()) if norms.numel() else 0
    if norms.numel() and float(deviation[worst]) > tolerance:
        raise ValueError(
            f"{name} rows must have unit norm (within {tolerance}); row {worst} has norm {float(norms[worst]):.6g}. "
            f"Normalise it first, e.g. dictionary / dictionary.norm(dim=1, keepdim=True)"
        )


def matching_pursuit(
    y: torch.Tensor,
    dictionary: torch.Tensor,
    n_steps: int,
    *,
    tol: float | None = None,
    absolute: bool = False,
    allow_reselect: bool = True,
) -> SolverResult:
    """Matching pursuit codes for a batch; see the module docstring for the iteration.

    Parameters
    ----------
    y : (N, m) observations (subtract any decoder bias first).
    dictionary : (p, m) atoms as rows, each of unit norm (checked to 1e-3; ValueError otherwise).
    n_steps : number of greedy steps T ≥ 0; each sample gets at most T non-zero codes.
    tol : freeze a sample once ‖r‖ ≤ tol·‖y‖ (it takes no further steps); the loop stops when all samples
        are frozen. None: run ``n_steps`` steps for every sample.
    absolute : select by |s_j| instead of s_j (the coefficient s_j keeps its sign either way).
    allow_reselect : False masks atoms already chosen for a sample (needs n_steps ≤ p). The study's MP-SAE
        uses ``absolute=True, allow_reselect=False``.

    Returns
    -------
    SolverResult: codes (N, p) in the dtype/device of ``y``, differentiable w.r.t. ``y`` and ``dictionary``;
    n_iter = steps actually run; converged = every sample met ``tol`` (always False when ``tol`` is None).
    """
    check_matrix("y", y)
    check_matrix("dictionary", dictionary, cols=y.shape[1])
    check_int_range("n_steps", n_steps, 0)
    if tol is not None:
        check_positive("tol", tol)
    if not allow_reselect:
        name = "n_steps (with allow_reselect=False, at most the number of atoms)"
        check_int_range(name, n_steps, 0, dictionary.shape[0])
    check_unit_rows("dictionary", dictionary)
    d = dictionary.to(dtype=y.dtype, device=y.device)
    n, p = y.shape[0], d.shape[0]

    residual = y
    indices: list[torch.Tensor] = []  # each (N, 1), int64
    coefficients: list[torch.Tensor] = []  # each (N, 1)
    active: torch.Tensor | None = None  # (N, 1) float mask of unfrozen samples; None = all active
    threshold = tol * torch.linalg.vector_norm(y.detach(), dim=1, keepdim=True) if tol is not None else None
    n_iter, converged = 0, False
    for _ in range(n_steps):
        if threshold is not None:
            done = torch.linalg.vector_norm(residual.detach(), dim=1, keepdim=True) <= threshold  # (N, 1)
            if bool(done.all()):
                converged = True
                break
            active = (~done).to(y.dtype)
        with torch.no_grad():
            scores = residual @ d.T  # (N, p) correlations
            if absolute:
                scores.abs_()
            if not allow_reselect and indices:
                # O(N·t) writes at the atoms already used, instead of an (N, p) mask pass
                scores.scatter_(1, torch.cat(indices, dim=1), float("-inf"))
            j = scores.max(dim=1, keepdim=True).indices  # (N, 1); max is ~3x faster than argmax on CPU
        atom = d.index_select(0, j.squeeze(1))  # (N, m)
        # s_j recomputed as r·D_j: the same value, but its backward costs O(N·m) instead of O(N·p·m).
        coefficient = (residual * atom).sum(dim=1, keepdim=True)  # (N, 1)
        if active is not None:
            coefficient = coefficient * active
        residual = residual - coefficient * atom
        indices.append(j)
        coefficients.append(coefficient)
        n_iter += 1
    if threshold is not None and not converged:
        converged = bool((torch.linalg.vector_norm(residual.detach(), dim=1, keepdim=True) <= threshold).all())

    codes = y.new_zeros(n, p)
    if indices:
        codes = codes.scatter_add(1, torch.cat(indices, dim=1), torch.cat(coefficients, dim=1))
    return SolverResult(codes, n_iter, converged)

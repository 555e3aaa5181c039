"""Orthogonal matching pursuit (Pati, Rezaiifar & Krishnaprasad 1993; Tropp 2004), batched over samples.

For every row y of Y (N, m) and a dictionary D (p, m) with atoms as rows, repeat T times from r = y:

    j = argmax_{j ∉ S} |r D_jᵀ| / ‖D_j‖;   S ← S ∪ {j};   z_S = argmin ‖y − z_S D_S‖²;   r = y − z_S D_S

so the residual is orthogonal to every selected atom. In the papers' column form ``y = A z``, ``A = D.T``.
Tropp (2004, Thm 3.5) proves exact recovery of every k-sparse code when k < (1 + 1/μ)/2, μ the mutual
coherence max_{i≠j} |⟨D_i, D_j⟩| of the normalised atoms.

Each sample keeps its support as a list of T indices. The support Gram matrix (N, t, t) and the
correlations D_S yᵀ (N, t) grow by one row per step (O(N·t·m)), and the small normal equations are solved by
a batched Cholesky factorisation in float64, so one step costs O(N·p·m) for the selection plus O(N·t³).
"""

from __future__ import annotations

import torch

from dictlab.inference.proximal_gradient import SolverResult
from dictlab.validation import check_int_range, check_matrix, check_positive

# Added to the diagonal of the support Gram matrix, relative to its largest diagonal entry, so that a
# (numerically) dependent selection — possible once the residual is zero or t > m — stays solvable.
_RELATIVE_RIDGE = 1e-12


def solve_gram_system(gram: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Solve ``gram · x = rhs`` for a batch of symmetric positive semi-definite (B, t, t) matrices, rhs (B, t).

    Cholesky with a tiny ridge; any batch entry whose factorisation still fails is solved by pseudo-inverse.
    """
    scale = gram.diagonal(dim1=-2, dim2=-1).amax(dim=-1, keepdim=True).clamp_min(torch.finfo(gram.dtype).tiny)
    ridge = torch.diag_embed((_RELATIVE_RIDGE * scale).expand(-1, gram.shape[-1]))
    factor, info = torch.linalg.cholesky_ex(gram + ridge)
    solution = torch.cholesky_solve(rhs.unsqueeze(-1), factor).squeeze(-1)
    failed = info != 0
    if bool(failed.any()):
        solution[failed] = (torch.linalg.pinv(gram[failed], hermitian=True) @ rhs[failed].unsqueeze(-1)).squeeze(-1)
    return solution


@torch.no_grad()
def orthogonal_matching_pursuit(
    y: torch.Tensor,
    dictionary: torch.Tensor,
    n_nonzero: int,
    *,
    tol: float | None = None,
) -> SolverResult:
    """OMP codes for a batch; see the module docstring for the iteration.

    Parameters
    ----------
    y : (N, m) observations.
    dictionary : (p, m) atoms as rows; need not be unit-norm (selection divides by the atom norms), but a
        zero row is never useful.
    n_nonzero : number of atoms T to select per sample, 0 ≤ T ≤ p.
    tol : freeze a sample once ‖r‖ ≤ tol·‖y‖ (it selects no more atoms); the loop stops when all samples are
        frozen. None: select exactly ``n_nonzero`` atoms for every sample.

    Returns
    -------
    SolverResult: codes (N, p) in the dtype/device of ``y`` (no gradient); n_iter = selection steps run;
    converged = every sample met ``tol`` (always False when ``tol`` is None).
    """
    check_matrix("y", y)
    check_matrix("dictionary", dictionary, cols=y.shape[1])
    check_int_range("n_nonzero (at most the number of atoms)", n_nonzero, 0, dictionary.shape[0])
    if tol is not None:
        check_positive("tol", tol)
    d = dictionary.to(dtype=y.dtype, device=y.device)
    n, p = y.shape[0], d.shape[0]
    work = torch.float64  # the t×t solves are tiny; float64 keeps them exact enough for orthogonality
    y_work = y.to(work)
    d_work = d.to(work)
    inverse_norms = torch.linalg.vector_norm(d, dim=1).clamp_min(torch.finfo(d.dtype).tiny).reciprocal()

    support = torch.zeros(n, n_nonzero, dtype=torch.long, device=y.device)
    valid = torch.zeros(n, n_nonzero, dtype=torch.bool, device=y.device)  # False: a frozen sample's padding
    atoms = y_work.new_zeros(n, n_nonzero, d.shape[1])  # D_S per sample
    gram = y_work.new_zeros(n, n_nonzero, n_nonzero)
    rhs = y_work.new_zeros(n, n_nonzero)  # D_S yᵀ
    coefficients = y_work.new_zeros(n, 0)
    residual = y
    threshold = tol * torch.linalg.vector_norm(y, dim=1) if tol is not None else None
    n_iter, converged = 0, False
    for t in range(n_nonzero):
        active = torch.ones(n, dtype=torch.bool, device=y.device)
        if threshold is not None:
            active = torch.linalg.vector_norm(residual, dim=1) > threshold
            if not bool(active.any()):
                converged = True
                break
        scores = (residual @ d.T).abs_().mul_(inverse_norms)
        # A frozen sample's slots are padding (see below) but are masked too, which is harmless.
        scores.scatter_(1, support[:, :t], float("-inf"))
        j = scores.max(dim=1).indices  # (N,); max is ~3x faster than argmax on CPU
        support[:, t] = j
        valid[:, t] = active
        new_atom = d_work.index_select(0, j) * active.unsqueeze(1).to(work)  # (N, m); zero for frozen samples
        atoms[:, t] = new_atom
        cross = torch.einsum("ntm,nm->nt", atoms[:, : t + 1], new_atom)  # (N, t+1)
        gram[:, t, : t + 1] = cross
        gram[:, : t + 1, t] = cross
        # A frozen sample's padding slot gets an identity row and a zero right-hand side, so its code is 0.
        gram[:, t, t] += (~active).to(work)
        rhs[:, t] = (y_work * new_atom).sum(dim=1)
        coefficients = solve_gram_system(gram[:, : t + 1, : t + 1], rhs[:, : t + 1])  # (N, t+1)
        residual = (y_work - torch.einsum("nt,ntm->nm", coefficients, atoms[:, : t + 1])).to(y.dtype)
        n_iter += 1
    if threshold is not None and not converged:
        converged = bool((torch.linalg.vector_norm(residual, dim=1) <= threshold).all())

    codes = y.new_zeros(n, p)
    if n_iter:
        values = (coefficients * valid[:, :n_iter].to(work)).to(y.dtype)
        codes.scatter_add_(1, support[:, :n_iter], values)
    return SolverResult(codes, n_iter, converged)

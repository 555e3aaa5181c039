"""Least-squares codes on a given support: re-estimate the magnitudes of an encoder's active units.

For every row y of Y (N, m), a dictionary D (p, m) with atoms as rows and a support S ⊆ {1..p} per sample,

    z_S = y D_Sᵀ (D_S D_Sᵀ + ρ I)⁻¹,   z_j = 0 for j ∉ S

— the study's ``reestimate_magnitudes`` (STUDY-SPEC §3.6; its column form ``z_S = X D_S (D_SᵀD_S + ρI)⁻¹`` has
D_S = our D_Sᵀ), optionally followed by clamping at 0. With ρ = 1e-8 this is ordinary least squares on S
whenever D_S has full row rank (|S| ≤ m, independent atoms).

Samples with the same support share the factorisation of D_S D_Sᵀ: supports are grouped with
``torch.unique`` and each group is factorised once, all groups in one batched call. A support with more
atoms than dimensions (|S| > m) makes D_S D_Sᵀ singular; for those groups — and any group whose Cholesky
factorisation fails — the same ridge formula is evaluated through the SVD D_S = U Σ Vᵀ as
z_S = y V diag(σ/(σ² + ρ)) Uᵀ, which for ρ → 0 is the minimum-norm least-squares solution y D_S⁺.
All small solves run in float64; the result comes back in the dtype of ``y``.
"""

from __future__ import annotations

import torch

from dictlab.validation import check_matrix, check_positive

# Bound on the gathered (rows, |S|, m) atom tensor per chunk of samples.
_MAX_GATHERED_ENTRIES = 1 << 24


def _padded_indices(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a (G, p) bool mask: (G, t) indices of its True entries, left-aligned, and the (G, t) validity mask."""
    counts = mask.sum(dim=1)
    width = int(counts.max()) if mask.shape[0] else 0
    order = torch.argsort(mask.to(torch.int8), dim=1, descending=True, stable=True)[:, :width]
    valid = torch.arange(width, device=mask.device) < counts.unsqueeze(1)
    return order, valid


def _group_solve(
    y: torch.Tensor, dictionary: torch.Tensor, support: torch.Tensor, ridge: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (n, t) on padded supports and their (n, t) indices, for one chunk; computed in float64."""
    groups, inverse = torch.unique(support, dim=0, return_inverse=True)  # (G, p), (n,)
    index, valid = _padded_indices(groups)  # (G, t)
    work = torch.float64
    atoms = dictionary.to(work)[index] * valid.unsqueeze(-1).to(work)  # (G, t, m), padding rows zero
    dim = atoms.shape[2]
    y_work = y.to(work)
    gram = atoms @ atoms.transpose(1, 2)  # (G, t, t)
    # Padding slots get an identity row (and a zero right-hand side), which decouples them: code 0.
    ones = torch.ones_like(valid, dtype=work)
    diagonal = torch.where(valid, ones * ridge, ones)  # float64 throughout: a float32 ridge perturbs ill-posed solves
    factor, info = torch.linalg.cholesky_ex(gram + torch.diag_embed(diagonal))
    use_svd = (valid.sum(dim=1) > dim) | (info != 0)  # (G,)
    rhs = torch.einsum("nm,ntm->nt", y_work, atoms[inverse])  # (n, t) = y D_Sᵀ
    codes = torch.cholesky_solve(rhs.unsqueeze(-1), factor[inverse]).squeeze(-1)
    if bool(use_svd.any()):
        rows = use_svd[inverse]  # samples whose group needs the SVD route
        u, sigma, vh = torch.linalg.svd(atoms[use_svd], full_matrices=False)  # (g, t, r), (g, r), (g, r, m)
        # Singular values below pinv's default cutoff count as zero (otherwise ρ = 0 would divide 0 by 0).
        cutoff = sigma.amax(dim=1, keepdim=True) * max(atoms.shape[1], dim) * torch.finfo(work).eps
        filtered = torch.where(sigma > cutoff, sigma / (sigma.square() + ridge), 0.0)
        local = torch.cumsum(use_svd.to(torch.long), dim=0) - 1  # group index → index among SVD groups
        which = local[inverse[rows]]
        projected = torch.einsum("nm,nrm->nr", y_work[rows], vh[which]) * filtered[which]
        codes[rows] = torch.einsum("nr,ntr->nt", projected, u[which])
    codes = codes * valid[inverse].to(work)
    return codes, index[inverse]


def least_squares_on_support(
    y: torch.Tensor,
    dictionary: torch.Tensor,
    support: torch.Tensor,
    *,
    ridge: float = 1e-8,
    nonneg: bool = False,
) -> torch.Tensor:
    """Per-sample least-squares codes restricted to ``support``; see the module docstring for the formula.

    Parameters
    ----------
    y : (N, m) observations (subtract any decoder bias first).
    dictionary : (p, m) atoms as rows.
    support : (N, p) bool, True where a code may be non-zero (e.g. ``sae_codes.abs() > 1e-4``).
    ridge : ρ ≥ 0 added to the diagonal of D_S D_Sᵀ (the study's 1e-8).
    nonneg : clamp the solution at 0 afterwards (the study's choice; a clamp, not a non-negative LS solve).

    Returns
    -------
    (N, p) codes in the dtype/device of ``y``, zero outside the support (all zero for an empty support).
    """
    check_matrix("y", y)
    check_matrix("dictionary", dictionary, cols=y.shape[1])
    check_positive("ridge", ridge, allow_zero=True)
    if not isinstance(support, torch.Tensor) or support.dtype != torch.bool:
        given = support.dtype if isinstance(support, torch.Tensor) else type(support).__name__
        raise ValueError(f"support must be a bool torch.Tensor (e.g. codes.abs() > 1e-4), got {given}")
    n, p, m = y.shape[0], dictionary.shape[0], y.shape[1]
    if support.shape != (n, p):
        raise ValueError(f"support must have shape ({n}, {p}) = (samples, atoms), got {tuple(support.shape)}")
    support = support.to(y.device)
    codes = y.new_zeros(n, p)
    largest = int(support.sum(dim=1).max()) if n else 0
    if largest == 0:
        return codes
    rows_per_chunk = max(1, _MAX_GATHERED_ENTRIES // (largest * m))
    for start in range(0, n, rows_per_chunk):
        stop = min(n, start + rows_per_chunk)
        values, index = _group_solve(y[start:stop], dictionary.to(y.device), support[start:stop], ridge)
        # Padding slots point at atoms outside the support and carry 0, so scatter_add leaves them 0.
        codes[start:stop].scatter_add_(1, index, values.to(y.dtype))
    return codes.clamp_min(0) if nonneg else codes

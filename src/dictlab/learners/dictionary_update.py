"""The dictionary step of alternating dictionary learning, and the upkeep of unused or duplicated atoms.

Shapes, atoms as rows: observations Y (N, m), codes Z (N, p), dictionary D (p, m), ``Y ≈ Z D``.

* ``least_squares_dictionary``: the Method of Optimal Directions (Engan, Aase & Husøy, ICASSP 1999),
  ``D = argmin_D ‖Y − Z D‖²_F + ε‖D‖²_F = (ZᵀZ + εI)⁻¹ ZᵀY``. In the papers' column form
  ``X ≈ A Zᵀ`` this is ``A = X Z (ZᵀZ + εI)⁻¹ = Dᵀ``.
* ``normalize_atoms``: unit-norm rows, zero rows stay zero (an atom no sample uses is all zero after MOD).
* ``atoms_to_replace`` / ``replace_atoms``: K-SVD's atom upkeep (Aharon, Elad & Bruckstein, IEEE TSP 2006,
  §IV-E): an atom no code uses, or one nearly parallel to a more-used atom, is wasted capacity; it is
  replaced by the normalised residual of a badly reconstructed sample, so that it starts where the
  dictionary explains least.
"""

from __future__ import annotations

import math

import torch

from dictlab.validation import check_matrix, check_positive

# Atoms are replaced only before this fraction of a learner's rounds, so the last rounds refine a fixed set.
POLISH_START = 0.8
# Rows of the (rows, p) cosine block computed at once when looking for duplicates (bounds memory at large p).
_COSINE_BLOCK_ROWS = 2048


def least_squares_dictionary(codes: torch.Tensor, y: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """MOD dictionary (p, m) = (ZᵀZ + εI)⁻¹ ZᵀY for codes Z (N, p) and observations Y (N, m).

    Solved by a Cholesky factorisation of the (p, p) system in the dtype of ``y``; if that factorisation
    fails (ZᵀZ singular to working precision, e.g. ε = 0 and an unused atom), it is redone in float64 and,
    failing that, by a minimum-norm least-squares solve. An atom that no sample uses gets a zero row.
    The solution is LAPACK's column-major layout; a model that keeps the dictionary stores a row-major copy
    (``SparseCodingModel``), so that a saved and loaded model runs the same kernels.
    """
    check_matrix("y", y)
    check_matrix("codes", codes, rows=y.shape[0])
    check_positive("ridge", ridge, allow_zero=True)
    z = codes.to(dtype=y.dtype, device=y.device)
    gram = z.T @ z  # (p, p)
    gram.diagonal().add_(ridge)
    rhs = z.T @ y  # (p, m)
    factor, info = torch.linalg.cholesky_ex(gram)
    if int(info) == 0:
        solution = torch.cholesky_solve(rhs, factor)
        if bool(torch.isfinite(solution).all()):
            return solution
    gram64, rhs64 = gram.double(), rhs.double()
    factor, info = torch.linalg.cholesky_ex(gram64)
    if int(info) == 0:
        return torch.cholesky_solve(rhs64, factor).to(y.dtype)
    solution = torch.linalg.lstsq(gram64.cpu(), rhs64.cpu(), driver="gelsd").solution
    return solution.to(device=y.device, dtype=y.dtype)


def relative_change(new: torch.Tensor, old: torch.Tensor) -> float:
    """‖new − old‖_F / ‖old‖_F of two dictionaries (p, m): how far a round moved the atoms."""
    return float(torch.linalg.vector_norm(new - old) / torch.linalg.vector_norm(old).clamp_min(1e-12))


def normalize_atoms(dictionary: torch.Tensor, min_norm: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows divided by ``max(‖row‖, min_norm)`` (so zero rows stay zero); returns (unit dictionary, norms (p,))."""
    norms = torch.linalg.vector_norm(dictionary, dim=1)
    return dictionary / norms.clamp_min(min_norm).unsqueeze(1), norms


def duplicate_threshold(num_atoms: int, dim: int) -> float:
    """|cos| above which two atoms count as duplicates: ``min(0.95, max(0.6, 1.1·√(4 ln p / m)))``.

    √(4 ln p / m) is about the largest |cos| among p random unit vectors in m dimensions (the union bound over
    p²/2 pairs of N(0, 1/m) inner products), so true atoms of a random dictionary sit below the threshold and
    are not mistaken for duplicates: 0.6 at p = 1000, m = 93; 0.69 at p = 100, m = 47; 0.95 at p = 20, m = 15.
    """
    spread = 1.1 * math.sqrt(4 * math.log(max(num_atoms, 2)) / dim)
    return min(0.95, max(0.6, spread))


def atoms_to_replace(dictionary: torch.Tensor, codes: torch.Tensor, duplicate_cosine: float | None) -> torch.Tensor:
    """Indices (sorted, int64) of atoms worth replacing: those no code uses, and duplicates.

    An atom is a duplicate when its |cosine| with another atom exceeds ``duplicate_cosine``; of such a pair
    the one with fewer non-zero codes is replaced (ties: the higher index). ``None`` checks unused atoms only.

    dictionary : (p, m); codes : (N, p), the codes the dictionary was fitted to.
    """
    check_matrix("dictionary", dictionary)
    check_matrix("codes", codes, cols=dictionary.shape[0])
    usage = (codes != 0).sum(dim=0)  # (p,)
    unused = (usage == 0) | (torch.linalg.vector_norm(dictionary, dim=1) == 0)
    chosen = [unused.nonzero().squeeze(1)]
    if duplicate_cosine is not None:
        unit, _ = normalize_atoms(dictionary)
        p = unit.shape[0]
        for start in range(0, p, _COSINE_BLOCK_ROWS):
            rows = torch.arange(start, min(start + _COSINE_BLOCK_ROWS, p), device=unit.device)
            cosine = (unit[rows] @ unit.T).abs_()  # (rows, p)
            cosine[torch.arange(rows.numel(), device=unit.device), rows] = 0  # an atom is no duplicate of itself
            best, partner = cosine.max(dim=1)
            duplicated = best > duplicate_cosine
            i, j = rows[duplicated], partner[duplicated]
            # i is the one to go when it is used less, or as much and has the higher index
            i_goes = (usage[i] < usage[j]) | ((usage[i] == usage[j]) & (i > j))
            chosen.append(torch.where(i_goes, i, j))
    return torch.unique(torch.cat(chosen))


def replace_atoms(
    dictionary: torch.Tensor,
    codes: torch.Tensor,
    y: torch.Tensor,
    indices: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace atoms ``indices`` by the normalised residuals of the worst-reconstructed samples.

    The residual ``Y − Z D`` (N, m) is taken with the given (unnormalised) dictionary; the atoms get the
    residuals of the ``len(indices)`` samples with the largest residual norm, one sample each, and their
    code columns are zeroed. If there are more atoms to replace than samples with a non-zero residual,
    the rest become random unit vectors from ``generator``. Returns new (dictionary (p, m), codes (N, p)).
    """
    check_matrix("y", y)
    check_matrix("dictionary", dictionary, cols=y.shape[1])
    check_matrix("codes", codes, rows=y.shape[0], cols=dictionary.shape[0])
    dictionary, codes = dictionary.clone(), codes.clone()
    count = int(indices.numel())
    if count == 0:
        return dictionary, codes
    residual = y - codes.to(y.dtype) @ dictionary.to(y.dtype)
    error = torch.linalg.vector_norm(residual, dim=1)
    available = min(count, int((error > 0).sum()))
    worst = error.topk(available).indices
    new_atoms = residual[worst] / error[worst].unsqueeze(1)
    if available < count:
        extra = torch.randn(count - available, y.shape[1], generator=generator, dtype=torch.float64)
        extra = (extra / torch.linalg.vector_norm(extra, dim=1, keepdim=True)).to(device=y.device, dtype=y.dtype)
        new_atoms = torch.cat([new_atoms, extra])
    dictionary[indices] = new_atoms.to(dictionary.dtype)
    codes[:, indices] = 0
    return dictionary, codes

"""Diagnostics of any learned dictionary on any data: why SAE dictionaries look the way they do.

Pure functions of observations, codes and dictionaries (atoms as rows: Y (N, m), Z (N, p), D (p, m),
Y ≈ Z D + offset), streaming over samples in row chunks so that no N × p matrix is ever formed. Codes may be
dense or sparse (COO/CSR) tensors, ``SparseCodes``, or a callable ``encode(y_chunk)`` (see ``codes``).

* ``stationarity`` — per atom, the residual of the stationarity condition of its direction for the
  non-negative L1 objective (seed 003): is the atom aligned with the code-weighted sum of its residuals?
* ``kkt_violation`` — how far the codes are from the Lasso optimality conditions for the dictionary, with
  a given λ or the one λ that fits them best.
* ``antipodal_pairs``, ``dense_latents``, ``splitting``, ``absorption`` — structure against ground truth.
* ``diagnose`` — all of them for one dictionary and its codes, as JSON values (``dictlab diagnose``).
"""

from dictlab.diagnostics.codes import CodeChunk, CodesLike, code_chunks, sparse_codes
from dictlab.diagnostics.report import diagnose, json_ready
from dictlab.diagnostics.stationarity import (
    KKTResult,
    StationarityResult,
    estimate_lam,
    kkt_violation,
    quantile_summary,
    stationarity,
)
from dictlab.diagnostics.structure import (
    AbsorptionResult,
    AntipodalPairs,
    DenseLatents,
    Splitting,
    absorption,
    antipodal_pairs,
    dense_latents,
    splitting,
)

__all__ = [
    "AbsorptionResult",
    "AntipodalPairs",
    "CodeChunk",
    "CodesLike",
    "DenseLatents",
    "KKTResult",
    "Splitting",
    "StationarityResult",
    "absorption",
    "antipodal_pairs",
    "code_chunks",
    "dense_latents",
    "diagnose",
    "estimate_lam",
    "json_ready",
    "kkt_violation",
    "quantile_summary",
    "sparse_codes",
    "splitting",
    "stationarity",
]

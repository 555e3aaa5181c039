"""Every diagnostic of one dictionary with its codes on one set of observations, as a JSON-ready table.

``diagnose`` is what ``dictlab diagnose`` prints for the model and for its reference rows (the true dictionary
with FISTA codes, a random dictionary with FISTA codes). Codes are taken once, as a sparse tensor or
``SparseCodes`` (encode a split with ``sparse_codes(model.encode, len(y), y=y)``), and every diagnostic streams
over them.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dictlab.diagnostics.codes import CodesLike
from dictlab.diagnostics.stationarity import estimate_lam, kkt_violation, stationarity
from dictlab.diagnostics.structure import absorption, antipodal_pairs, dense_latents, splitting

ANTIPODAL_COSINE = -0.9
DENSE_FRACTION = 0.5
SPLIT_COSINE = 0.7
ABSORBING_COSINE = 0.3


def json_ready(value: Any) -> Any:
    """``value`` with every non-finite float (in dicts, lists and tuples, recursively) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def diagnose(
    y: torch.Tensor,
    codes: CodesLike,
    dictionary: torch.Tensor,
    *,
    offset: torch.Tensor | None = None,
    true_dictionary: torch.Tensor | None = None,
    true_codes: CodesLike | None = None,
    parent: torch.Tensor | None = None,
) -> dict[str, Any]:
    """The diagnostics of ``dictionary`` (p, m) with ``codes`` (N, p) on ``y`` (N, m), as plain JSON values.

    stationarity (per-atom residual, multiplier, usage; quantiles of the residual and the pull coherence over
    live atoms), kkt (with the estimated λ, on unit-norm atoms — the seed's objective; an ``error`` and the
    raw ``lam_estimate`` when no λ > 0 fits, as for TopK codes), antipodal pairs (cos ≤ −0.9, and how many
    join two dense latents: the seed's dense antipodal features), dense latents (> 50 % of samples), and with a
    true dictionary splitting (|cos| ≥ 0.7) and, with true codes and a ``parent`` tensor, absorption
    (absorbing cosine 0.3). NaN is None.
    """
    n = y.shape[0]
    station = stationarity(y, codes, dictionary, offset=offset)
    summary = station.summary()
    out: dict[str, Any] = {
        "atoms": int(dictionary.shape[0]),
        "dead_atoms": int(station.dead.sum()),
        "l0_mean": float(station.usage.sum()),
        "stationarity": {
            "residual": station.quantiles,
            "multiplier_median": summary["multiplier_median"],
            "pull_coherence": summary["pull_coherence"],
            "per_atom_residual": station.residual.tolist(),
            "per_atom_multiplier": station.multiplier.tolist(),
            "per_atom_usage": station.usage.tolist(),
        },
    }
    try:
        kkt = kkt_violation(y, codes, dictionary, offset=offset, unit_atoms=True)
        out["kkt"] = kkt.summary()
    except ValueError as err:  # no λ > 0 fits (or no active entry): say which λ the codes point to, if any
        try:
            lam_estimate: float | None = estimate_lam(y, codes, dictionary, offset=offset, unit_atoms=True)
        except ValueError:
            lam_estimate = None
        out["kkt"] = {"error": str(err), "lam_estimate": lam_estimate}
    dense = dense_latents(codes, DENSE_FRACTION, num_latents=dictionary.shape[0], y=y)
    pairs = antipodal_pairs(dictionary, ANTIPODAL_COSINE)
    is_dense = torch.zeros(dictionary.shape[0], dtype=torch.bool)
    is_dense[dense.latents] = True
    both_dense = is_dense[pairs.pairs[:, 0]] & is_dense[pairs.pairs[:, 1]] if pairs.pairs.numel() else is_dense[:0]
    out["antipodal_pairs"] = {
        "cosine": ANTIPODAL_COSINE,
        "count": int(pairs.pairs.shape[0]),
        "dense_pairs": int(both_dense.sum()),
        "pairs": [[i, j, c] for (i, j), c in zip(pairs.pairs.tolist(), pairs.cosines.tolist(), strict=True)],
    }
    out["dense_latents"] = {
        "fraction": DENSE_FRACTION,
        "count": int(dense.latents.numel()),
        "latents": dense.latents.tolist(),
    }
    out["splitting"] = None
    out["absorption"] = None
    if true_dictionary is not None:
        split = splitting(dictionary, true_dictionary, SPLIT_COSINE)
        out["splitting"] = {**split.summary(), "split": split.split.tolist(), "counts": split.counts.tolist()}
        if true_codes is not None and parent is not None:
            result = absorption(
                dictionary,
                true_dictionary,
                parent,
                codes,
                true_codes,
                y=y,
                offset=offset,
                absorbing_cosine=ABSORBING_COSINE,
            )
            out["absorption"] = {
                **result.summary(),
                "per_parent": [
                    {"parent": p_, "main_latent": m_, "main_cosine": c_, "rate": r_, "samples": s_}
                    for p_, m_, c_, r_, s_ in zip(
                        result.parents.tolist(),
                        result.main_latents.tolist(),
                        result.main_cosines.tolist(),
                        result.parent_rate.tolist(),
                        result.parent_samples.tolist(),
                        strict=True,
                    )
                ],
            }
    out["samples"] = n
    return json_ready(out)

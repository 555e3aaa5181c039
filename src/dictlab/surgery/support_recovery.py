"""Support recovery: does the SAE pick the wrong atoms, or the right atoms with wrong magnitudes? (STUDY-SPEC §4.3.5)

The SAE's support ``S = {j : |z_j| > 1e-4}`` is kept and its magnitudes re-estimated by least squares on
its frozen decoder, ``z_S = argmin ‖(y − b_dec) − z_S W_dec,S‖²`` then clamped at 0 (§3.6,
``dictlab.inference.least_squares_on_support``). Arms (labels for method ``sae_X``): ``sae_X`` (its codes),
``support_lstsq+sae_X`` (its support, least-squares magnitudes), ``fista+sae_X`` (FISTA from zero on the
decoder) and ``fista_oracle``. If least squares on the SAE's support scores like the SAE, the support is
the error; if it closes the gap to FISTA, the magnitudes were. Each record carries support precision,
recall and F1 per split under the decoder-to-truth matching (§3.5) besides the standard metrics.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from pydantic import Field

from dictlab.data import GroundTruthDataset
from dictlab.experiments.evaluate import encode_splits
from dictlab.experiments.runs import Record
from dictlab.experiments.tasks import TaskContext
from dictlab.inference import least_squares_on_support
from dictlab.metrics.support import ACTIVE_THRESHOLD
from dictlab.models import DictionaryModel
from dictlab.surgery.parts import (
    FistaParams,
    Variant,
    fista_solver,
    fit_model,
    oracle_variant,
    register_surgery,
    score_variants,
    with_dictionary,
)


class SupportRecoveryParams(FistaParams):
    """See the module docstring."""

    ridge: float = Field(1e-8, ge=0, description="ρ added to D_S D_Sᵀ in the least squares (the study's 1e-8).")


def support_lstsq_codes(
    model: DictionaryModel, data: GroundTruthDataset, codes: dict[str, torch.Tensor], *, ridge: float = 1e-8
) -> dict[str, torch.Tensor]:
    """Per split: least-squares codes (N, p) on the support of ``codes[split]`` (|z| > 1e-4) with ``model``'s
    dictionary and inputs ``y − offset``, clamped at 0; ``ridge`` ρ as in ``least_squares_on_support``."""
    out = {}
    for split, part in data.splits.items():
        x = model.remove_offset(part.y)
        support = codes[split].abs() > ACTIVE_THRESHOLD
        out[split] = least_squares_on_support(x, model.dictionary.detach().to(x), support, ridge=ridge, nonneg=True)
    return out


def support_recovery_variants(
    data: GroundTruthDataset, model: DictionaryModel, params: SupportRecoveryParams
) -> Iterator[Variant]:
    """The arms of the module docstring for a fitted ``model``, one at a time."""
    name = params.method
    own = encode_splits(model, data)
    frozen = with_dictionary(model, fista_solver(params.lam, params.max_iter))
    yield Variant(name, model, own)
    yield Variant(f"support_lstsq+{name}", frozen, support_lstsq_codes(model, data, own, ridge=params.ridge))
    yield Variant(f"fista+{name}", frozen, encode_splits(frozen, data))
    yield oracle_variant(data, params.lam, params.max_iter)


def support_recovery_records(
    data: GroundTruthDataset, model: DictionaryModel, params: SupportRecoveryParams, *, seed: int
) -> list[Record]:
    return score_variants(support_recovery_variants(data, model, params), data, seed=seed)


@register_surgery("support_recovery", SupportRecoveryParams)
def support_recovery(data: GroundTruthDataset, params: SupportRecoveryParams, context: TaskContext) -> list[Record]:
    """Fit ``params.method``, then score its support with least-squares magnitudes against its codes and FISTA."""
    return support_recovery_records(data, fit_model(data, params, context), params, seed=context.seed)

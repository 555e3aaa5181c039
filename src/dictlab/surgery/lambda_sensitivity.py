"""λ sensitivity: is the frozen-decoder result an artefact of the inference λ? (STUDY-SPEC §4.3.7)

FISTA (z ≥ 0) on the SAE's frozen decoder (inputs ``y − b_dec``) and on the true dictionary, for every λ of
a grid (the study's 0.001 … 2). Labels for method ``sae_X``: ``fista+sae_X`` and ``fista_oracle`` at step =
λ, and ``sae_X`` (its own encoder, no λ) without a step (the study tagged it λ = −1).
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field, field_validator

from dictlab.data import GroundTruthDataset
from dictlab.experiments.evaluate import encode_splits
from dictlab.experiments.runs import Record
from dictlab.experiments.tasks import TaskContext
from dictlab.models import DictionaryModel
from dictlab.surgery.parts import (
    SurgeryParams,
    Variant,
    fista_solver,
    fit_model,
    oracle_variant,
    register_surgery,
    score_variants,
    sorted_nonnegative,
    with_dictionary,
)

STUDY_LAMBDAS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class LambdaSensitivityParams(SurgeryParams):
    lams: list[float] = Field(list(STUDY_LAMBDAS), min_length=1, description="λ grid of FISTA (each ≥ 0).")
    max_iter: int = Field(100, ge=0, description="FISTA iterations (the study's 100).")

    @field_validator("lams")
    @classmethod
    def _sorted_nonnegative(cls, lams: list[float]) -> list[float]:
        return sorted_nonnegative(lams, "every λ")


def lambda_variants(
    data: GroundTruthDataset, model: DictionaryModel, params: LambdaSensitivityParams
) -> Iterator[Variant]:
    """The SAE's own codes, then FISTA on its decoder and on the truth for each λ, one at a time."""
    yield Variant(params.method, model, encode_splits(model, data))
    for lam in params.lams:
        frozen = with_dictionary(model, fista_solver(lam, params.max_iter))
        yield Variant(f"fista+{params.method}", frozen, encode_splits(frozen, data), lam)
        yield oracle_variant(data, lam, params.max_iter, step=lam)


def lambda_sensitivity_records(
    data: GroundTruthDataset, model: DictionaryModel, params: LambdaSensitivityParams, *, seed: int
) -> list[Record]:
    return score_variants(lambda_variants(data, model, params), data, seed=seed)


@register_surgery("lambda_sensitivity", LambdaSensitivityParams)
def lambda_sensitivity(data: GroundTruthDataset, params: LambdaSensitivityParams, context: TaskContext) -> list[Record]:
    """Fit ``params.method``, then FISTA on its frozen decoder and on the truth over a λ grid."""
    return lambda_sensitivity_records(data, fit_model(data, params, context), params, seed=context.seed)

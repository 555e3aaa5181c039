"""Warm-start encoder: how many FISTA iterations does the SAE's encoder save? (STUDY-SPEC §4.3.4)

Inference on the SAE's frozen decoder, ``min_z ½‖(y − b_dec) − z W_dec‖² + λ‖z‖₁, z ≥ 0`` (column
form: ``A = W_decᵀ``), is convex, so FISTA from zero (``cold``) and FISTA from the SAE's codes (``warm``)
reach the same optimum; the question is how many iterations the encoder's guess saves. Records (labels
for method ``sae_X``):

* ``cold+sae_X`` / ``warm+sae_X`` at step = n for every iteration budget n: the codes after exactly n
  iterations (each budget a separate FISTA run; without a stopping test the n-th iterate of a longer run
  is the same), scored (``score``) plus the mean objective per split (``objective_id``/``_ood``). Warm at 0
  is the SAE's own codes; cold at 0 (all zeros) is skipped, as in the study.
* ``to_tolerance+sae_X`` (no step): per split, the iterations each start needs until the relative change
  ‖z_t − z_{t−1}‖_F ≤ tol·‖z_t‖_F over the whole split (tested every iteration, capped at
  ``converge_max_iter``), whether each got there, the iterations saved, and whether both reached the same
  solution: max |Δz| between the two end points and the relative gap of their mean objectives. Since the
  relative change is a weak progress measure for FISTA (momentum keeps it large near the optimum), also
  ``budget_to_objective_<start>_<split>``: the smallest budget whose mean objective is within
  ``objective_rtol`` of the converged one.
* ``fista_oracle`` at step = the largest budget: FISTA with that many iterations on the true dictionary.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import torch
from pydantic import Field, field_validator

from dictlab.data import GroundTruthDataset
from dictlab.experiments.evaluate import encode_splits
from dictlab.experiments.runs import Record
from dictlab.experiments.tasks import TaskContext
from dictlab.inference import fista
from dictlab.models import DictionaryModel
from dictlab.surgery.parts import (
    SurgeryParams,
    Variant,
    encode_from,
    fista_solver,
    fit_model,
    lasso_objective,
    oracle_variant,
    register_surgery,
    score_variants,
    sorted_nonnegative,
    with_dictionary,
)

STUDY_BUDGETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500)


class WarmstartEncoderParams(SurgeryParams):
    lam: float = Field(0.1, ge=0, description="λ of FISTA; the study's 0.1.")
    budgets: list[int] = Field(list(STUDY_BUDGETS), min_length=1, description="FISTA iteration budgets (each ≥ 0).")
    tol: float = Field(1e-5, gt=0, description="Relative-change tolerance for the iterations-to-tolerance count.")
    converge_max_iter: int = Field(10_000, ge=1, description="Cap on iterations when counting iterations to tolerance.")
    objective_rtol: float = Field(
        1e-4,
        gt=0,
        description="A budget has reached the solution when its mean objective is within this of the optimum.",
    )

    @field_validator("budgets")
    @classmethod
    def _sorted_nonnegative(cls, budgets: list[int]) -> list[int]:
        return sorted_nonnegative(budgets, "iteration budgets")


def budget_variants(
    data: GroundTruthDataset, model: DictionaryModel, params: WarmstartEncoderParams
) -> Iterator[Variant]:
    """Cold and warm FISTA codes on ``model``'s frozen decoder after each iteration budget, one at a time,
    with the mean Lasso objective per split (``objective_id``, ``objective_ood``) as extra metrics."""
    name, own = params.method, encode_splits(model, data)
    for n in params.budgets:
        frozen = with_dictionary(model, fista_solver(params.lam, n))
        starts = [("cold", None), ("warm", own)] if n > 0 else [("warm", own)]
        for start, z0 in starts:
            if n == 0:
                codes = own
            else:
                codes = encode_splits(frozen, data) if z0 is None else encode_from(frozen, data, z0)
            objectives = {
                f"objective_{split}": float(lasso_objective(frozen, part.y, codes[split], params.lam).mean())
                for split, part in data.evaluation_splits().items()
            }
            yield Variant(f"{start}+{name}", frozen, codes, n, objectives)


def to_tolerance(data: GroundTruthDataset, model: DictionaryModel, params: WarmstartEncoderParams) -> dict[str, float]:
    """Iterations to ``params.tol`` from zero and from the model's codes, and how far apart the end points are."""
    frozen = with_dictionary(model, fista_solver(params.lam, params.converge_max_iter))
    out: dict[str, float] = {}
    for split, part in data.evaluation_splits().items():
        y = part.y
        with torch.no_grad():
            start = model.encode(y)
        runs = {
            start_name: fista(
                frozen.remove_offset(y),
                frozen.dictionary,
                params.lam,
                max_iter=params.converge_max_iter,
                tol=params.tol,
                nonneg=True,
                z0=z0,
                check_every=1,
            )
            for start_name, z0 in (("cold", None), ("warm", start))
        }
        objectives = {key: float(lasso_objective(frozen, y, run.codes, params.lam).mean()) for key, run in runs.items()}
        for key, run in runs.items():
            out[f"iters_{key}_{split}"] = run.n_iter
            out[f"converged_{key}_{split}"] = float(run.converged)
            out[f"objective_{key}_{split}"] = objectives[key]
        out[f"iters_saved_{split}"] = runs["cold"].n_iter - runs["warm"].n_iter
        out[f"max_abs_dz_{split}"] = float((runs["cold"].codes - runs["warm"].codes).abs().max())
        scale = max(abs(objectives["cold"]), 1e-300)
        out[f"objective_rel_gap_{split}"] = (objectives["warm"] - objectives["cold"]) / scale
    return out


def budgets_to_objective(records: list[Record], converged: dict[str, float], rtol: float) -> dict[str, float]:
    """Per start and split, the smallest budget whose mean objective is within ``rtol`` of the best converged
    objective ``min(objective_cold_<split>, objective_warm_<split>)``; absent where no budget got there."""
    out: dict[str, float] = {}
    splits = sorted({key.rsplit("_", 1)[1] for key in converged if key.startswith("objective_cold_")})
    for split in splits:
        best = min(converged[f"objective_cold_{split}"], converged[f"objective_warm_{split}"])
        for start in ("cold", "warm"):
            reached = [
                cast(float, r.step)
                for r in records  # every budget's record has its budget as step
                if r.label.startswith(f"{start}+") and r.metrics[f"objective_{split}"] <= best + rtol * abs(best)
            ]
            if reached:
                out[f"budget_to_objective_{start}_{split}"] = min(reached)
    return out


def warmstart_encoder_records(
    data: GroundTruthDataset, model: DictionaryModel, params: WarmstartEncoderParams, *, seed: int
) -> list[Record]:
    """All records of the module docstring for a fitted ``model``."""
    records = score_variants(budget_variants(data, model, params), data, seed=seed)
    converged = to_tolerance(data, model, params)
    converged.update(budgets_to_objective(records, converged, params.objective_rtol))
    top = max(params.budgets)
    oracle = score_variants([oracle_variant(data, params.lam, top, step=top)], data, seed=seed)
    return [*records, Record(f"to_tolerance+{params.method}", converged), *oracle]


@register_surgery("warmstart_encoder", WarmstartEncoderParams)
def warmstart_encoder(data: GroundTruthDataset, params: WarmstartEncoderParams, context: TaskContext) -> list[Record]:
    """Fit ``params.method``, then compare FISTA from zero and from its codes on its frozen decoder."""
    return warmstart_encoder_records(data, fit_model(data, params, context), params, seed=context.seed)

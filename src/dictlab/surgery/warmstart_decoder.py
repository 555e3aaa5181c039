"""Warm-start decoder: is the SAE's decoder at least a good starting point for dictionary learning?
(STUDY-SPEC §4.3.3)

DL-FISTA (``dictlab.learners.dl_fista.DLFista``) started at the SAE's decoder ``W_dec`` (rows normalised)
versus from a random dictionary (the same seeded draw for every SAE), both on the bias-corrected training
inputs ``y − b_dec``. The cold arm is DL-FISTA's default from a random start, so it includes the growth
phase (60 % of the atoms first, the rest seeded from residuals at round min(100, n/2)); the warm arm starts
with every atom given, so it has none. Labels for method ``sae_X``:

* ``warm_dl+sae_X`` / ``cold_dl+sae_X`` at step = n for each round budget n: a fresh DL-FISTA run with
  ``max_rounds = n`` (as in the study; early stopping may end it sooner — ``n_rounds`` says when, and
  ``final_lam`` is the λ it ended at), scored
  (``score``: MCC / accuracy / AUC id and ood, dictionary match). DLFista exposes no per-round dictionary or
  callback, and its atom upkeep stops at a fraction of ``max_rounds``, so a run with budget n is not a
  prefix of a longer one: each budget is refitted. Warm at n = 0 is FISTA on the frozen (normalised)
  decoder with the configured final encoder (λ = ``lam``, ``encode_iter``); cold at 0 is skipped, as in
  the study.
* ``warm_dl_rounds+sae_X`` / ``cold_dl_rounds+sae_X`` at step = round: the largest budget's run logged at
  every round from its learner history (no refitting): ``mean_cosine``, ``frac_close``, ``mean_angle``,
  ``mean_norm_ratio`` of its dictionary matched to the truth, and its ``mse_loss``, ``l0``, ``lam``, ``dead``, …
* ``fista_oracle`` at step = the largest budget: the true dictionary with that same encoder.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from dictlab.data import GroundTruthDataset
from dictlab.experiments.evaluate import encode_splits
from dictlab.experiments.runs import Record
from dictlab.experiments.tasks import TaskContext
from dictlab.learners.dl_fista import DLFista, DLFistaConfig
from dictlab.methods import Problem
from dictlab.models import DictionaryModel, FitContext
from dictlab.surgery.learning_dynamics import dynamics_records
from dictlab.surgery.parts import (
    SurgeryParams,
    Variant,
    fista_solver,
    fit_model,
    oracle_variant,
    register_surgery,
    renormalised,
    score_variant,
    sorted_nonnegative,
    with_dictionary,
)

# Round budgets of the study's ladder; the defaults are those below the learner's max_rounds, then max_rounds.
ROUND_LADDER = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class WarmstartDecoderParams(SurgeryParams):
    dl_recipe: Literal["dictlab", "study"] = Field(
        "dictlab", description="DL-FISTA defaults: dictlab's or the study's."
    )
    dl_overrides: dict[str, Any] = Field(default_factory=dict, description="DLFistaConfig fields over the DL recipe.")
    budgets: list[int] | None = Field(
        None,
        description="Round budgets (each ≥ 0); None: 0 and the ladder 1, 2, 5, 10, 20, 50, … up to max_rounds.",
    )

    @field_validator("budgets")
    @classmethod
    def _sorted_nonnegative(cls, budgets: list[int] | None) -> list[int] | None:
        if budgets is None:
            return None
        return sorted_nonnegative(budgets, "round budgets")

    def dl_config(self, **fields: Any) -> DLFistaConfig:
        """DL-FISTA's config: the DL recipe, then ``dl_overrides``, then ``fields``; ValueError naming a bad field."""
        base = DLFistaConfig.study() if self.dl_recipe == "study" else DLFistaConfig()
        try:
            return DLFistaConfig(**{**base.model_dump(), **self.dl_overrides, **fields})
        except (ValidationError, TypeError) as err:
            raise ValueError(f"params.dl_overrides: {err}") from None

    def round_budgets(self) -> list[int]:
        if self.budgets is not None:
            return self.budgets
        top = self.dl_config().max_rounds
        return [0, *(n for n in ROUND_LADDER if n < top), top]

    def validate_for(self, problem: Problem) -> None:
        super().validate_for(problem)
        self.dl_config(width=problem.num_latents)


def fit_dl(
    data: GroundTruthDataset,
    model: DictionaryModel,
    params: WarmstartDecoderParams,
    rounds: int,
    *,
    warm: bool,
    seed: int,
    trace: bool = False,
) -> DLFista:
    """DL-FISTA for ``rounds`` rounds on the train inputs minus ``model``'s offset, started at ``model``'s
    decoder (``warm``) or at random; ``trace`` logs the dictionary's match to the truth every round."""
    extra = {"max_rounds": rounds, "log_every": 1} if trace else {"max_rounds": rounds}
    config = params.dl_config(width=model.dictionary.shape[0], **extra)
    start = model.dictionary.detach() if warm else None
    offset = model.offset.detach() if model.offset is not None else None
    learner = DLFista(config, initial_dictionary=start, offset=offset)
    return learner.fit(data.train.y, FitContext(seed=seed, ground_truth=data.dictionary if trace else None))


def warmstart_decoder_records(
    data: GroundTruthDataset,
    model: DictionaryModel,
    params: WarmstartDecoderParams,
    *,
    seed: int,
    context: TaskContext | None = None,
) -> list[Record]:
    """All records of the module docstring for a fitted ``model``."""
    name, budgets = params.method, params.round_budgets()
    top = budgets[-1]
    config = params.dl_config()
    # round 0 and the oracle use the encoder DL-FISTA is configured to end with
    solver = fista_solver(config.lam, config.encode_iter, config.encode_tol)
    records: list[Record] = []
    traces: list[Record] = []
    if budgets[0] == 0:
        frozen = with_dictionary(model, solver, renormalised(model.dictionary))
        at_start = {"n_rounds": 0.0, "final_lam": solver.lam}
        variant = Variant(f"warm_dl+{name}", frozen, encode_splits(frozen, data), 0, at_start)
        records.append(score_variant(variant, data, seed=seed))
    for arm, warm in (("warm_dl", True), ("cold_dl", False)):
        for n in (b for b in budgets if b > 0):
            learner = fit_dl(data, model, params, n, warm=warm, seed=seed, trace=n == top)
            rounds = {"n_rounds": float(learner.rounds_run), "final_lam": float(learner.final_lam)}
            variant = Variant(f"{arm}+{name}", learner, encode_splits(learner, data), n, rounds)
            records.append(score_variant(variant, data, seed=seed))
            if n == top:
                traces += dynamics_records(learner, f"{arm}_rounds+{name}")
                if context is not None:
                    context.save_model(f"{arm}+{name}", learner)
    oracle = score_variant(oracle_variant(data, solver.lam, solver.max_iter, step=top), data, seed=seed)
    return [*records, *traces, oracle]


@register_surgery("warmstart_decoder", WarmstartDecoderParams)
def warmstart_decoder(data: GroundTruthDataset, params: WarmstartDecoderParams, context: TaskContext) -> list[Record]:
    """Fit ``params.method``, then DL-FISTA from its decoder vs from random, over round budgets."""
    model = fit_model(data, params, context)
    return warmstart_decoder_records(data, model, params, seed=context.seed, context=context)

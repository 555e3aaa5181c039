"""The study's controlled experiments ("surgeries"), written as recombinations of a fitted model's parts.

Each surgery is a task ``surgery.<name>`` in ``dictlab.experiments.tasks.TASKS`` — ``(data, RunSpec,
TaskContext) -> list[Record]`` with its parameters in ``spec.params`` — and, for use without a run, a
``<name>_records(data, fitted_model, params, seed=...)`` function on an already fitted model:

* ``frozen_decoder`` — the SAE's encoder vs FISTA on its decoder (raw, renormalised, oracle norms, refined);
* ``warmstart_decoder`` — DL-FISTA from the SAE's decoder vs from random, over round budgets;
* ``warmstart_encoder`` — FISTA from the SAE's codes vs from zero: iterations and end points;
* ``support_recovery`` — the SAE's support with least-squares magnitudes;
* ``learning_dynamics`` — the matched dictionary's quality along training (SAEs, DL-FISTA);
* ``lambda_sensitivity`` — FISTA on the frozen decoder and on the truth over a λ grid.
"""

from dictlab.surgery.frozen_decoder import FrozenDecoderParams, frozen_decoder_records, frozen_decoder_variants
from dictlab.surgery.lambda_sensitivity import LambdaSensitivityParams, lambda_sensitivity_records
from dictlab.surgery.learning_dynamics import LearningDynamicsParams, dynamics_records
from dictlab.surgery.parts import (
    FistaParams,
    FitParams,
    SurgeryParams,
    Variant,
    lasso_objective,
    renormalised,
    score,
    with_dictionary,
    with_oracle_norms,
)
from dictlab.surgery.support_recovery import SupportRecoveryParams, support_lstsq_codes, support_recovery_records
from dictlab.surgery.warmstart_decoder import WarmstartDecoderParams, warmstart_decoder_records
from dictlab.surgery.warmstart_encoder import WarmstartEncoderParams, warmstart_encoder_records

__all__ = [
    "FistaParams",
    "FitParams",
    "FrozenDecoderParams",
    "LambdaSensitivityParams",
    "LearningDynamicsParams",
    "SupportRecoveryParams",
    "SurgeryParams",
    "Variant",
    "WarmstartDecoderParams",
    "WarmstartEncoderParams",
    "dynamics_records",
    "frozen_decoder_records",
    "frozen_decoder_variants",
    "lambda_sensitivity_records",
    "lasso_objective",
    "renormalised",
    "score",
    "support_lstsq_codes",
    "support_recovery_records",
    "warmstart_decoder_records",
    "warmstart_encoder_records",
    "with_dictionary",
    "with_oracle_norms",
]

"""Learning dynamics: when does dictionary learning go wrong? (STUDY-SPEC §4.3.6)

The method (each SAE, DL-FISTA) is fitted with ``track_dynamics=True``, so its learner logs, along training,
its dictionary Hungarian-matched to the truth (the truth is only looked at, never fitted to). One record per
logged entry, label = the method, step = the training step (SAEs: optimiser steps, logged every
``log_every`` steps) or round (DL-FISTA; ``history.unit`` says which), metrics = what the learner logged:
``mean_cosine``, ``frac_close`` (|cos| > 0.9), ``mse_loss`` (SAEs: training-batch MSE averaged since the last entry;
DL-FISTA: the round's fit), ``l0`` and the learner's other quantities. Dictionary quality only: no MCC here.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from dictlab.data import GroundTruthDataset
from dictlab.experiments.runs import Record
from dictlab.experiments.tasks import TaskContext
from dictlab.models import DictionaryModel
from dictlab.surgery.parts import FitParams, fit_model, known_method, register_surgery


class LearningDynamicsParams(FitParams):
    method: str = Field(
        "sae_topk", description="Method to fit with its dynamics logged: a name in dictlab.methods.METHODS."
    )

    _known = field_validator("method")(known_method)

    def method_name(self) -> str:
        return self.method


def dynamics_records(model: DictionaryModel, label: str) -> list[Record]:
    """One Record per entry of ``model.history``: step = the entry's step, the rest of the entry as metrics."""
    entries = list(model.history)
    if not entries or "mean_cosine" not in entries[-1]:
        raise ValueError(
            f"{label} logged no dictionary quality along training (history with mean_cosine); "
            "learning dynamics need a learner that logs it when fitted with track_dynamics=True (SAEs, DL-FISTA)"
        )
    return [Record(label, {k: v for k, v in entry.items() if k != "step"}, entry["step"]) for entry in entries]


@register_surgery("learning_dynamics", LearningDynamicsParams)
def learning_dynamics(data: GroundTruthDataset, params: LearningDynamicsParams, context: TaskContext) -> list[Record]:
    """Fit ``params.method`` with its dictionary's match to the truth logged along training."""
    return dynamics_records(fit_model(data, params, context, track_dynamics=True), params.method)

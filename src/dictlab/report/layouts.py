"""What the report shows for each task: the metrics drawn, the table's columns, how curves are paneled.

A task without a registered layout gets ``DEFAULT_LAYOUT`` (the six headline metrics where present, else the
first few numeric metrics), so a new task shows up in the report without code here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dictlab.registry import Registry

HEADLINE = ("mcc_id", "mcc_ood", "acc_id", "acc_ood", "auc_id", "auc_ood")


@dataclass(frozen=True)
class TaskLayout:
    """title: heading of the task's section.
    metrics: one figure each, in this order (metrics a task did not record are skipped).
    table_metrics: columns of the summary table (those present).
    curve_panels: ``"subject"`` — one panel per surgery subject (SAE), lines per arm (warm/cold …);
        ``"label"`` — one panel per label, lines per grid point (for x axes in different units per label).
    step_name: x-axis label of curves (what ``step`` counts); step_title: what figure titles
        append to the metric (``vs λ``).
    table_step: the step at which the summary table shows a curve: ``"last"``, or a value (e.g. λ = 0.1)
        falling back to the last step where a label lacks it.
    phase_metrics: metrics that get phase-diagram heat maps over (δ, ρ) when the runs sweep the measurement ratio
        at a fixed problem (``report.phase.is_phase_sweep``); () for none.
    """

    title: str
    metrics: tuple[str, ...]
    table_metrics: tuple[str, ...]
    curve_panels: Literal["subject", "label"] = "subject"
    step_name: str = "step"
    step_title: str = "vs step"
    table_step: Literal["last"] | float = "last"
    phase_metrics: tuple[str, ...] = ("mcc_ood",)


LAYOUTS: Registry[TaskLayout] = Registry("report layout")

DEFAULT_LAYOUT = TaskLayout(title="", metrics=HEADLINE, table_metrics=(*HEADLINE, "dict_mean_cosine"))


def _register(name: str, layout: TaskLayout) -> None:
    LAYOUTS.register(name)(layout)


_register(
    "method",
    TaskLayout(
        title="Sweep",
        # absorption exists on data with a hierarchy only; GT Recovery and MIP (seed 004) and the stationarity
        # residual (seed 003) on every run
        metrics=(
            *HEADLINE,
            "gt_recovery_encoder_90",
            "mip_encoder",
            "gt_recovery_90",
            "mip",
            "absorption_ood",
            "absorption_id",
            "stationarity_median",
        ),
        table_metrics=(
            "mcc_id",
            "mcc_ood",
            "mcc_chance_ood",
            "acc_id",
            "acc_ood",
            "auc_id",
            "auc_ood",
            "dict_mean_cosine",
            "gt_recovery_encoder_90",
            "mip_encoder",
            "gt_recovery_90",
            "mip",
            "absorption_ood",
            "split_features",
            "stationarity_median",
            "pull_coherence_median",
            "total_s",
        ),
    ),
)
_register(
    "surgery.frozen_decoder",
    TaskLayout(
        title="Frozen decoder",
        metrics=(*HEADLINE, "dict_mean_cosine"),
        table_metrics=("mcc_id", "mcc_ood", "acc_ood", "auc_ood", "dict_mean_cosine", "dict_frac_close"),
    ),
)
_register(
    "surgery.support_recovery",
    TaskLayout(
        title="Support recovery",
        metrics=("support_f1_id", "support_f1_ood", "support_precision_ood", "support_recall_ood", "mcc_id", "mcc_ood"),
        table_metrics=(
            "support_f1_id",
            "support_f1_ood",
            "support_precision_ood",
            "support_recall_ood",
            "mcc_id",
            "mcc_ood",
            "acc_ood",
        ),
    ),
)
_register(
    "surgery.warmstart_decoder",
    TaskLayout(
        title="Warm-start decoder",
        metrics=("mcc_ood", "mcc_id", "dict_mean_cosine", "mean_cosine", "frac_close"),
        table_metrics=("mcc_id", "mcc_ood", "dict_mean_cosine", "mean_cosine", "frac_close", "n_rounds"),
        step_name="DL-FISTA rounds",
        step_title="vs DL-FISTA rounds",
    ),
)
_register(
    "surgery.warmstart_encoder",
    TaskLayout(
        title="Warm-start encoder",
        metrics=("mcc_ood", "mcc_id", "objective_ood", "iters_saved_id", "iters_saved_ood"),
        table_metrics=(
            "mcc_id",
            "mcc_ood",
            "objective_ood",
            "iters_cold_ood",
            "iters_warm_ood",
            "iters_saved_ood",
            "max_abs_dz_ood",
            "objective_rel_gap_ood",
            "budget_to_objective_cold_ood",
            "budget_to_objective_warm_ood",
        ),
        step_name="FISTA iterations",
        step_title="vs FISTA iterations",
    ),
)
_register(
    "surgery.learning_dynamics",
    TaskLayout(
        title="Learning dynamics",
        metrics=("mean_cosine", "frac_close", "mse_loss", "l0"),
        table_metrics=("mean_cosine", "frac_close", "mean_norm_ratio", "mse_loss", "l0"),
        curve_panels="label",
        step_name="training step (SAEs: optimiser steps; DL-FISTA: rounds)",
        step_title="along training",
    ),
)
_register(
    "surgery.lambda_sensitivity",
    TaskLayout(
        title="λ sensitivity",
        metrics=("mcc_ood", "mcc_id", "acc_ood", "auc_ood"),
        table_metrics=("mcc_id", "mcc_ood", "acc_ood", "auc_ood"),
        step_name="FISTA λ",
        step_title="vs λ",
        table_step=0.1,
    ),
)


def layout_for(task: str) -> TaskLayout:
    """The registered layout of ``task``, else ``DEFAULT_LAYOUT`` titled with the task's name."""
    if task in LAYOUTS:
        return LAYOUTS[task]
    return TaskLayout(title=task, metrics=DEFAULT_LAYOUT.metrics, table_metrics=DEFAULT_LAYOUT.table_metrics)


_NAMES = {
    "mcc": "MCC",
    "mcc_chance": "MCC chance floor",
    "acc": "probe accuracy",
    "auc": "best-feature AUC",
    "support_f1": "support F1",
    "support_precision": "support precision",
    "support_recall": "support recall",
    "objective": "lasso objective",
    "iters_saved": "FISTA iterations saved by the warm start",
    "iters_cold": "FISTA iterations to tolerance, cold",
    "iters_warm": "FISTA iterations to tolerance, warm",
    "dict_mean_cosine": "matched dictionary cosine",
    "dict_frac_close": "share of atoms with |cos| > 0.9",
    "mean_cosine": "matched dictionary cosine (training log)",
    "frac_close": "share of atoms with |cos| > 0.9 (training log)",
    "mean_norm_ratio": "matched norm ratio",
    "mse_loss": "reconstruction MSE (training)",
    "l1_loss": "L1 penalty (training)",
    "l0_loss": "L0 penalty (training)",
    "l0": "L0 (active codes)",
    "n_rounds": "rounds run",
    "total_s": "time (s)",
    "gt_recovery_90": "GT Recovery τ=0.9 (decoder)",
    "gt_recovery_95": "GT Recovery τ=0.95 (decoder)",
    "mip": "MIP (decoder)",
    "gt_recovery_encoder_90": "GT Recovery τ=0.9 (encoder)",
    "gt_recovery_encoder_95": "GT Recovery τ=0.95 (encoder)",
    "mip_encoder": "MIP (encoder)",
    "dead_latents": "dead latents",
}
_SPLITS = {"id": "ID", "ood": "OOD"}

# Metrics bounded in [0, 1]: their axes span [0, 1] so figures compare at a glance.
UNIT_INTERVAL_PREFIXES = (
    "mcc_",
    "acc_",
    "auc_",
    "support_",
    "dict_mean_cosine",
    "dict_frac_close",
    "mean_cosine",
    "frac_close",
    "gt_recovery",
    "mip",
)


def metric_title(metric: str) -> str:
    """``mcc_ood`` → ``MCC (OOD)``; ``mean_cosine`` → ``matched dictionary cosine``; unknown names unchanged."""
    if metric in _NAMES:
        return _NAMES[metric]
    base, _, split = metric.rpartition("_")
    if base in _NAMES and split in _SPLITS:
        return f"{_NAMES[base]} ({_SPLITS[split]})"
    return metric


def chance_metric(metric: str) -> str | None:
    """The chance-floor metric of an MCC metric (``mcc_ood`` → ``mcc_chance_ood``), else None."""
    if metric.startswith("mcc_") and not metric.startswith("mcc_chance_"):
        return "mcc_chance_" + metric.removeprefix("mcc_")
    return None


def is_unit_interval(metric: str) -> bool:
    return metric.startswith(UNIT_INTERVAL_PREFIXES)

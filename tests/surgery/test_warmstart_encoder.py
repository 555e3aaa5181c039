"""Warm-start encoder: records per budget, and the laws — FISTA started at the exact optimum needs no more
iterations than from zero and both end at the same solution; a budget's codes are FISTA's n-th iterate."""

from __future__ import annotations

import pytest
import torch

from dictlab.experiments.tasks import TASKS
from dictlab.inference import FistaSolver, fista
from dictlab.models import SparseCodingModel
from dictlab.surgery import WarmstartEncoderParams, lasso_objective, warmstart_encoder_records
from dictlab.surgery.warmstart_encoder import budget_variants, to_tolerance

from .conftest import SAE_OVERRIDES, context, spec


def test_task_records_budgets_tolerance_and_oracle(data):
    params = {"method": "sae_topk", "overrides": SAE_OVERRIDES, "budgets": [5, 0, 1], "tol": 1e-4}
    records = TASKS["surgery.warmstart_encoder"].run(data, spec("surgery.warmstart_encoder", **params), context())
    steps = [(r.label, r.step) for r in records]
    assert steps == [
        ("warm+sae_topk", 0.0),
        ("cold+sae_topk", 1.0),
        ("warm+sae_topk", 1.0),
        ("cold+sae_topk", 5.0),
        ("warm+sae_topk", 5.0),
        ("to_tolerance+sae_topk", None),
        ("fista_oracle", 5.0),
    ]
    for r in records[:5]:
        assert {"mcc_ood", "objective_id", "objective_ood", "acc_ood"} <= set(r.metrics)
    tolerance = records[5].metrics
    for split in ("id", "ood"):
        assert tolerance[f"iters_saved_{split}"] == tolerance[f"iters_cold_{split}"] - tolerance[f"iters_warm_{split}"]
        assert tolerance[f"converged_cold_{split}"] == 1.0 and tolerance[f"converged_warm_{split}"] == 1.0


def test_budget_codes_are_fistas_nth_iterate_and_warm_zero_is_the_encoder(data64):
    truth = data64.dictionary
    model = SparseCodingModel(truth, FistaSolver(lam=0.1, max_iter=4))  # an imperfect "encoder"
    params = WarmstartEncoderParams(budgets=[0, 3, 7], lam=0.1)
    variants = {(v.label, v.step): v for v in budget_variants(data64, model, params)}
    y = data64["ood"].y
    own = model.encode(y)
    torch.testing.assert_close(variants[("warm+sae_topk", 0)].codes["ood"], own, rtol=0, atol=0)
    for n in (3, 7):
        cold = fista(y, truth, 0.1, max_iter=n, nonneg=True).codes
        warm = fista(y, truth, 0.1, max_iter=n, nonneg=True, z0=own).codes
        torch.testing.assert_close(variants[("cold+sae_topk", n)].codes["ood"], cold, rtol=0, atol=1e-14)
        torch.testing.assert_close(variants[("warm+sae_topk", n)].codes["ood"], warm, rtol=0, atol=1e-14)
    records = warmstart_encoder_records(data64, model, params, seed=0)
    by_key = {(r.label, r.step): r.metrics for r in records}
    expected = float(lasso_objective(model, y, own, 0.1).mean())
    assert by_key[("warm+sae_topk", 0.0)]["objective_ood"] == pytest.approx(expected, rel=1e-12)


def test_warm_start_at_the_optimum_needs_no_more_iterations_and_reaches_the_same_solution(data64):
    truth = data64.dictionary
    # the "SAE" encoder returns the Lasso optimum on its (true) decoder, to float64 precision
    optimum = SparseCodingModel(truth, FistaSolver(lam=0.1, max_iter=20_000, tol=1e-14))
    params = WarmstartEncoderParams(lam=0.1, tol=1e-10, converge_max_iter=20_000)
    out = to_tolerance(data64, optimum, params)
    for split in ("id", "ood"):
        assert out[f"converged_cold_{split}"] == 1.0 and out[f"converged_warm_{split}"] == 1.0
        assert out[f"iters_warm_{split}"] <= out[f"iters_cold_{split}"]
        assert out[f"iters_cold_{split}"] > 10 * out[f"iters_warm_{split}"]  # the saving is real, not a tie
        assert abs(out[f"objective_rel_gap_{split}"]) <= 1e-6
        assert out[f"max_abs_dz_{split}"] <= 1e-5


def test_a_worse_start_saves_fewer_iterations(data64):
    truth = data64.dictionary
    good = SparseCodingModel(truth, FistaSolver(lam=0.1, max_iter=200))
    poor = SparseCodingModel(truth, FistaSolver(lam=0.1, max_iter=5))
    params = WarmstartEncoderParams(lam=0.1, tol=1e-8, converge_max_iter=20_000)
    good_out, poor_out = to_tolerance(data64, good, params), to_tolerance(data64, poor, params)
    assert good_out["iters_warm_ood"] < poor_out["iters_warm_ood"]
    assert good_out["iters_cold_ood"] == poor_out["iters_cold_ood"]  # the cold start does not depend on the encoder


def test_budget_to_objective_is_zero_for_a_start_at_the_optimum(data64):
    optimum = SparseCodingModel(data64.dictionary, FistaSolver(lam=0.1, max_iter=20_000, tol=1e-14))
    params = WarmstartEncoderParams(lam=0.1, budgets=[0, 1, 10, 100, 1000], tol=1e-10, converge_max_iter=20_000)
    records = warmstart_encoder_records(data64, optimum, params, seed=0)
    summary = next(r.metrics for r in records if r.label == "to_tolerance+sae_topk")
    for split in ("id", "ood"):
        assert summary[f"budget_to_objective_warm_{split}"] == 0.0
        assert summary[f"budget_to_objective_cold_{split}"] in (10.0, 100.0, 1000.0)
    # the objective at every budget is at least the optimum's (up to rounding): nothing beats the minimiser
    best = summary["objective_warm_id"]
    assert all(r.metrics["objective_id"] >= best * (1 - 1e-12) for r in records if "objective_id" in r.metrics)

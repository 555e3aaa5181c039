"""λ sensitivity: one arm per λ, FISTA on a decoder equal to the truth is the oracle at every λ, and above
λ_max = max (y Dᵀ) every code is zero."""

from __future__ import annotations

import pytest

from dictlab.experiments.tasks import TASKS
from dictlab.inference import FistaSolver
from dictlab.models import SparseCodingModel
from dictlab.surgery import LambdaSensitivityParams, lambda_sensitivity_records

from .conftest import SAE_OVERRIDES, context, spec


def test_task_records_one_arm_per_lambda(data):
    params = {"method": "sae_topk", "overrides": SAE_OVERRIDES, "lams": [0.1, 0.01], "max_iter": 30}
    records = TASKS["surgery.lambda_sensitivity"].run(data, spec("surgery.lambda_sensitivity", **params), context())
    assert [(r.label, r.step) for r in records] == [
        ("sae_topk", None),
        ("fista+sae_topk", 0.01),
        ("fista_oracle", 0.01),
        ("fista+sae_topk", 0.1),
        ("fista_oracle", 0.1),
    ]
    by_key = {(r.label, r.step): r.metrics for r in records}
    # a larger λ gives sparser codes
    assert by_key[("fista_oracle", 0.1)]["l0_id"] < by_key[("fista_oracle", 0.01)]["l0_id"]


def test_truth_as_decoder_equals_the_oracle_at_every_lambda_and_large_lambda_zeroes_codes(data64):
    lam_max = float(
        (data64["id"].y @ data64.dictionary.T).max().clamp_min((data64["ood"].y @ data64.dictionary.T).max())
    )
    lam_max = max(lam_max, float((data64.train.y @ data64.dictionary.T).max()))
    model = SparseCodingModel(data64.dictionary, FistaSolver(max_iter=2))
    params = LambdaSensitivityParams(lams=[0.05, 0.5, lam_max * 1.01], max_iter=40)
    records = lambda_sensitivity_records(data64, model, params, seed=0)
    by_key = {(r.label, r.step): r.metrics for r in records}
    for lam in params.lams:
        frozen, oracle = by_key[("fista+sae_topk", lam)], by_key[("fista_oracle", lam)]
        for name in ("mcc_id", "mcc_ood", "l0_id", "r2_ood", "acc_ood"):
            assert frozen[name] == pytest.approx(oracle[name], abs=1e-12), (lam, name)
    assert by_key[("fista_oracle", params.lams[-1])]["l0_id"] == 0.0
    assert by_key[("fista_oracle", 0.05)]["l0_id"] > 0.0

"""Warm-start decoder: one fresh DL-FISTA run per round budget and arm, the largest run's per-round trace,
and the laws — round 0 warm is FISTA on the (normalised) decoder; the trace ends at the largest run's
dictionary; the cold arm does not depend on the SAE's decoder."""

from __future__ import annotations

import pytest
import torch

from dictlab.experiments.tasks import TASKS
from dictlab.models import SparseCodingModel
from dictlab.surgery import WarmstartDecoderParams, warmstart_decoder_records

from .conftest import SAE_OVERRIDES, context, spec


def test_task_records_budgets_traces_and_oracle(data):
    params = {"method": "sae_topk", "overrides": SAE_OVERRIDES, "budgets": [0, 2, 4]}
    records = TASKS["surgery.warmstart_decoder"].run(data, spec("surgery.warmstart_decoder", **params), context())
    keys = [(r.label, r.step) for r in records]
    assert keys == [
        ("warm_dl+sae_topk", 0.0),
        ("warm_dl+sae_topk", 2.0),
        ("warm_dl+sae_topk", 4.0),
        ("cold_dl+sae_topk", 2.0),
        ("cold_dl+sae_topk", 4.0),
        *[("warm_dl_rounds+sae_topk", float(n)) for n in range(1, 5)],
        *[("cold_dl_rounds+sae_topk", float(n)) for n in range(1, 5)],
        ("fista_oracle", 4.0),
    ]
    by_key = {k: r.metrics for k, r in zip(keys, records, strict=True)}
    for arm in ("warm_dl", "cold_dl"):
        top, trace_end = by_key[(f"{arm}+sae_topk", 4.0)], by_key[(f"{arm}_rounds+sae_topk", 4.0)]
        assert top["n_rounds"] == 4.0
        assert top["dict_mean_cosine"] == pytest.approx(trace_end["mean_cosine"], abs=1e-6)  # the same run
        assert {"mcc_ood", "acc_ood", "dict_frac_close"} <= set(top)
    # round 0 of the warm arm is the SAE's decoder itself
    assert by_key[("warm_dl+sae_topk", 0.0)]["n_rounds"] == 0.0


def test_default_budgets_follow_the_learner_rounds():
    assert WarmstartDecoderParams().round_budgets() == [0, 1, 2, 5, 10, 20, 50, 100, 200]
    assert WarmstartDecoderParams(dl_recipe="study").round_budgets() == [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    assert WarmstartDecoderParams(dl_overrides={"max_rounds": 30}).round_budgets() == [0, 1, 2, 5, 10, 20, 30]


def test_round_zero_is_fista_on_the_normalised_decoder_and_cold_ignores_the_decoder(data64):
    truth = data64.dictionary
    g = torch.Generator().manual_seed(0)
    scales = torch.rand(truth.shape[0], 1, generator=g, dtype=torch.float64) + 0.5
    as_truth = SparseCodingModel(truth * scales)  # a "decoder" with the true directions, wrong norms
    random = SparseCodingModel(torch.randn(truth.shape, generator=g, dtype=torch.float64))
    params = WarmstartDecoderParams(budgets=[0, 3], dl_overrides={"lam_start": None})
    records = {(r.label, r.step): r.metrics for r in warmstart_decoder_records(data64, as_truth, params, seed=0)}
    others = {(r.label, r.step): r.metrics for r in warmstart_decoder_records(data64, random, params, seed=0)}
    # DL-FISTA normalises its starting atoms: round 0 from the rescaled truth is exactly the oracle
    start, oracle = records[("warm_dl+sae_topk", 0.0)], records[("fista_oracle", 3.0)]
    for name in ("mcc_id", "mcc_ood", "l0_ood", "r2_id", "dict_mean_cosine"):
        assert start[name] == pytest.approx(oracle[name], abs=1e-12), name
    # the cold arm starts from the same seeded random draw whatever the decoder was
    for name in ("mcc_ood", "dict_mean_cosine", "l0_id"):
        assert records[("cold_dl+sae_topk", 3.0)][name] == pytest.approx(
            others[("cold_dl+sae_topk", 3.0)][name], abs=1e-12
        )
    # and starting at the truth stays far ahead of starting at random after 3 rounds
    assert (
        records[("warm_dl+sae_topk", 3.0)]["dict_mean_cosine"]
        > records[("cold_dl+sae_topk", 3.0)]["dict_mean_cosine"] + 0.1
    )

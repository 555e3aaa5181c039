"""Frozen decoder: the arms, and the laws — a decoder that is the truth gives the oracle; oracle norms undo a
permutation and rescaling of the truth; renormalising unit-norm rows changes nothing."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dictlab.experiments.tasks import TASKS
from dictlab.inference import FistaSolver
from dictlab.models import SparseCodingModel
from dictlab.surgery import FrozenDecoderParams, frozen_decoder_records, frozen_decoder_variants, with_oracle_norms
from dictlab.surgery.parts import renormalised

from .conftest import SAE_OVERRIDES, context, spec

ARMS = ["sae_topk", "fista+sae_topk", "renormed+sae_topk", "oracle_norms+sae_topk", "refined+sae_topk", "fista_oracle"]


def test_task_records_every_arm_with_scores_and_diagnostics(data):
    run = spec("surgery.frozen_decoder", method="sae_topk", overrides=SAE_OVERRIDES)
    records = TASKS["surgery.frozen_decoder"].run(data, run, context())
    assert [r.label for r in records] == ARMS
    assert all(r.step is None for r in records)
    for r in records:
        for name in (
            "mcc_id",
            "mcc_ood",
            "acc_ood",
            "auc_ood",
            "dict_mean_cosine",
            "dict_mean_angle",
            "dict_mean_norm_ratio",
            "dict_frac_close",
            "support_precision_ood",
            "support_recall_id",
        ):
            assert 0.0 <= r.metrics[name] <= 1.6, (r.label, name)  # angles are in radians, ≤ π/2
    by_label = {r.label: r.metrics for r in records}
    assert by_label["fista_oracle"]["dict_mean_cosine"] == pytest.approx(1.0)
    # the SAE's decoder is an imperfect dictionary after 100 steps: the oracle is strictly better
    assert by_label["fista+sae_topk"]["mcc_ood"] < by_label["fista_oracle"]["mcc_ood"]


def test_decoder_equal_to_the_truth_gives_the_oracle(data64):
    truth = data64.dictionary
    # a model whose decoder IS the truth, with a deliberately poor encoder of its own (3 FISTA steps)
    model = SparseCodingModel(truth, FistaSolver(lam=0.1, max_iter=3))
    params = FrozenDecoderParams(method="sae_topk")
    arms = {v.label: v for v in frozen_decoder_variants(data64, model, params)}
    oracle = arms["fista_oracle"].codes
    for label in ("fista+sae_topk", "renormed+sae_topk", "oracle_norms+sae_topk"):
        for split in ("train", "id", "ood"):
            torch.testing.assert_close(arms[label].codes[split], oracle[split], rtol=0, atol=1e-12)
    assert not torch.allclose(arms["sae_topk"].codes["ood"], oracle["ood"])  # the model's own encoder differs
    records = {r.label: r.metrics for r in frozen_decoder_records(data64, model, params, seed=0)}
    for name, value in records["fista_oracle"].items():
        assert records["fista+sae_topk"][name] == pytest.approx(value, abs=1e-9), name


def test_oracle_norms_restore_the_oracle_codes_of_a_permuted_rescaled_truth(data64):
    truth = data64.dictionary
    g = torch.Generator().manual_seed(3)
    perm = torch.randperm(truth.shape[0], generator=g)
    scales = torch.rand(truth.shape[0], generator=g, dtype=torch.float64) * 2.5 + 0.2
    decoder = (truth * scales.unsqueeze(1))[perm]  # decoder row j = scales[perm[j]] · truth[perm[j]]
    model = SparseCodingModel(decoder)
    arms = {v.label: v for v in frozen_decoder_variants(data64, model, FrozenDecoderParams())}
    oracle = arms["fista_oracle"].codes
    for split in ("id", "ood"):
        torch.testing.assert_close(
            arms["oracle_norms+sae_topk"].codes[split], oracle[split][:, perm], rtol=0, atol=1e-10
        )
        torch.testing.assert_close(arms["renormed+sae_topk"].codes[split], oracle[split][:, perm], rtol=0, atol=1e-10)
        # raw FISTA on the rescaled atoms solves a differently weighted Lasso: different codes
        assert float((arms["fista+sae_topk"].codes[split] - oracle[split][:, perm]).abs().max()) > 1e-3


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), p=st.integers(2, 12), extra=st.integers(0, 4))
def test_oracle_norms_rescale_matched_rows_and_zero_the_rest(seed, p, extra):
    g = torch.Generator().manual_seed(seed)
    m = 8
    norms = torch.rand(p, 1, generator=g, dtype=torch.float64) + 0.5
    truth = torch.randn(p, m, generator=g, dtype=torch.float64) * norms
    learned = torch.randn(p + extra, m, generator=g, dtype=torch.float64)
    out = with_oracle_norms(learned, truth)
    from dictlab.metrics import match_dictionaries

    assignment = match_dictionaries(learned, truth).assignment
    true_norms = truth.norm(dim=1)
    torch.testing.assert_close(out[assignment].norm(dim=1), true_norms, rtol=1e-12, atol=0)
    torch.testing.assert_close(renormalised(out[assignment]), renormalised(learned[assignment]), rtol=1e-12, atol=1e-12)
    unmatched = torch.ones(p + extra, dtype=torch.bool)
    unmatched[assignment] = False
    assert bool((out[unmatched] == 0).all())


def test_frozen_fista_subtracts_the_offset(data64):
    """FISTA on (truth, offset b) over observations shifted by b equals the oracle on the unshifted data."""
    from dataclasses import replace

    from dictlab.data import Split

    b = torch.linspace(-1.0, 2.0, data64.input_dim, dtype=torch.float64)
    shifted = replace(
        data64, splits={name: Split(part.y + b, part.codes, part.labels) for name, part in data64.splits.items()}
    )
    model = SparseCodingModel(data64.dictionary, offset=b)
    shifted_arms = {v.label: v for v in frozen_decoder_variants(shifted, model, FrozenDecoderParams())}
    plain_oracle = {v.label: v for v in frozen_decoder_variants(data64, model, FrozenDecoderParams())}["fista_oracle"]
    torch.testing.assert_close(
        shifted_arms["fista+sae_topk"].codes["ood"], plain_oracle.codes["ood"], rtol=0, atol=1e-10
    )


def test_float32_data_on_a_fitted_sae(data, sae):
    arms = {v.label: v for v in frozen_decoder_variants(data, sae, FrozenDecoderParams(max_iter=50))}
    assert arms["fista+sae_topk"].codes["id"].dtype == torch.float32
    # FISTA warm-started at the SAE's codes decreases the Lasso objective relative to those codes
    from dictlab.surgery import lasso_objective

    frozen = arms["refined+sae_topk"].model
    before = lasso_objective(frozen, data["id"].y, arms["sae_topk"].codes["id"], 0.1).mean()
    after = lasso_objective(frozen, data["id"].y, arms["refined+sae_topk"].codes["id"], 0.1).mean()
    assert after < before

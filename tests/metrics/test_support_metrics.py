"""Support recovery on matched units (STUDY-SPEC §3.5) and per-latent detection scores."""

from __future__ import annotations

import pytest
import torch

from dictlab.data import SparseCodes
from dictlab.metrics import latent_classification, mcc, support_metrics

TRUE = torch.tensor([[0.5, 0.2, 0.0], [0.0, 0.0, 0.9]])
# unit 0 ↔ latent 0, unit 1 ↔ latent 1, unit 2 ↔ latent 2, unit 3 unmatched.
CODES = torch.tensor([[0.7, 5e-5, 0.3, 1.0], [0.0, 0.0, 0.0, 2.0]])
IDENTITY = torch.tensor([0, 1, 2])


def test_hand_example_per_sample():
    # sample 0: true {0, 1}, predicted {0, 2} (5e-5 is below the 1e-4 threshold) → TP 1, P = R = F1 = ½
    # sample 1: true {2}, predicted {} → P = R = F1 = 0
    result = support_metrics(TRUE, CODES, IDENTITY)
    assert result.precision == pytest.approx(0.25)
    assert result.recall == pytest.approx(0.25)
    assert result.f1 == pytest.approx(0.25)
    assert result.gt_l0 == pytest.approx(1.5)
    assert result.pred_l0 == pytest.approx(1.0)
    assert result.pred_total_l0 == pytest.approx(2.0)  # (3 + 1) / 2: unit 3 counts here only
    assert set(result.as_dict()) == {"precision", "recall", "f1", "gt_l0", "pred_l0", "pred_total_l0"}


def test_threshold_decides_activity():
    assert support_metrics(TRUE, CODES, IDENTITY, threshold=1e-5).precision == pytest.approx(1 / 3)


def test_hand_example_per_latent():
    # pair 0: TP 1, TN 1 → P = R = F1 = 1, acc 1; pair 1: FN 1, TN 1 → 0, 0, 0, acc ½;
    # pair 2: FP 1, FN 1 → 0, 0, 0, acc 0
    result = latent_classification(TRUE, CODES, IDENTITY)
    assert result.precision == pytest.approx(1 / 3)
    assert result.recall == pytest.approx(1 / 3)
    assert result.f1_score == pytest.approx(1 / 3)
    assert result.accuracy == pytest.approx(0.5)


def test_unmatched_latents_are_left_out():
    result = support_metrics(TRUE, CODES, torch.tensor([0, -1, -1]))
    # only latent 0 / unit 0: sample 0 TP 1 (P = R = 1); sample 1 nothing active → 0
    assert (result.precision, result.recall, result.gt_l0, result.pred_l0) == pytest.approx((0.5, 0.5, 0.5, 0.5))


def test_perfect_codes_recover_every_support():
    g = torch.Generator().manual_seed(0)
    indices = torch.rand(300, 25, generator=g).argsort(dim=1)[:, :4]
    true = SparseCodes(indices, torch.rand(300, 4, generator=g) + 0.01, 25)
    perm = torch.randperm(25, generator=g)
    codes = true.to_dense()[:, perm] * 3.0
    assignment = mcc(true.to_dense(), codes).assignment
    result = support_metrics(true, codes, assignment)
    assert (result.precision, result.recall, result.f1) == (1.0, 1.0, 1.0)
    assert result.gt_l0 == result.pred_l0 == result.pred_total_l0 == 4.0
    per_latent = latent_classification(true, codes, assignment)
    assert (per_latent.precision, per_latent.recall, per_latent.f1_score, per_latent.accuracy) == (1.0, 1.0, 1.0, 1.0)


def test_rejects_bad_assignments():
    with pytest.raises(ValueError, match="at most one"):
        support_metrics(TRUE, CODES, torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="one entry per true latent"):
        support_metrics(TRUE, CODES, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="-1 or a unit index"):
        support_metrics(TRUE, CODES, torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match=r"torch.long"):
        support_metrics(TRUE, CODES, torch.tensor([0.0, 1.0, 2.0]))

"""The study's MCC protocols (STUDY-SPEC §3.1): noise padding, variance filters, top-variance selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from dictlab.metrics import mcc_study_id, mcc_study_ood

HADAMARD = np.array([[1.0, 1, 1], [-1, 1, -1], [1, -1, -1], [-1, -1, 1]])


def padding(n: int, width: int) -> np.ndarray:
    return np.random.RandomState(42).normal(0, 1, (n, width))


def abs_rho(x: np.ndarray, y: np.ndarray) -> float:
    return abs(float(np.corrcoef(x, y)[0, 1]))


def reference_protocol(t: np.ndarray, p: np.ndarray) -> float:
    """Independent numpy statement of §3.1 steps 1–5."""
    width = max(t.shape[1], p.shape[1])
    if t.shape[1] < width:
        t = np.hstack([t, padding(len(t), width - t.shape[1])])
    if p.shape[1] < width:
        p = np.hstack([p, padding(len(p), width - p.shape[1])])

    def unit(x: np.ndarray) -> np.ndarray:
        c = x - x.mean(0)
        norm = np.linalg.norm(c, axis=0)
        return c / np.where(norm < 1e-8, 1.0, norm)

    corr = np.abs(unit(t).T @ unit(p))
    rows, cols = linear_sum_assignment(corr, maximize=True)
    return float(corr[rows, cols].mean())


def test_id_hand_example_pads_the_truth_with_noise():
    true = np.hstack([HADAMARD[:, :2], np.zeros((4, 1))])  # third latent inactive: dropped
    codes = np.stack([2 * HADAMARD[:, 0], HADAMARD[:, 1] + 5, np.full(4, 3.0)], axis=1)
    # T (2 columns) is padded by one noise column, matched with the constant unit: pairs 1, 1, 0
    assert mcc_study_id(true, codes) == pytest.approx(2 / 3)


def test_id_hand_example_pads_the_codes_with_noise():
    codes = np.stack([HADAMARD[:, 0], -HADAMARD[:, 1]], axis=1)
    expected = (1 + 1 + abs_rho(HADAMARD[:, 2], padding(4, 1)[:, 0])) / 3
    assert mcc_study_id(HADAMARD, codes) == pytest.approx(expected, abs=1e-12)


def test_ood_hand_example_selects_the_highest_variance_units():
    true = np.hstack([HADAMARD[:, :2], np.zeros((4, 1))])
    junk = np.array([0.3, -1.2, 2.0, 0.1])
    codes = np.stack([100 * junk, HADAMARD[:, 0], 0.01 * HADAMARD[:, 1], np.zeros(4)], axis=1)
    # n_active = 2: units 0 (junk) and 1 (copy of latent 0) are kept, the faint copy of latent 1 is not
    expected = (1 + abs_rho(HADAMARD[:, 1], junk)) / 2
    assert mcc_study_ood(true, codes) == pytest.approx(expected, abs=1e-12)


def test_ood_keeps_the_scaled_copies_when_they_have_the_most_variance():
    true = np.hstack([HADAMARD[:, :2], np.zeros((4, 1))])
    codes = np.stack([np.zeros(4), 3 * HADAMARD[:, 1], 5 * HADAMARD[:, 0] + 1, 0.1 * HADAMARD[:, 2]], axis=1)
    assert mcc_study_ood(true, codes) == pytest.approx(1.0)


@pytest.mark.parametrize("width", [15, 40, 60])
def test_protocols_agree_with_an_independent_numpy_statement(width):
    rng = np.random.default_rng(width)
    n, p = 300, 50
    true = np.where(rng.random((n, p)) < 0.1, rng.random((n, p)), 0.0)
    true[:, [3, 17]] = 0.0  # never active
    codes = rng.random((n, width)) * (rng.random((n, width)) < 0.3) + 0.5 * true[:, rng.integers(0, p, width)]
    active = true[:, true.var(0) > 1e-8]
    assert mcc_study_id(true, codes) == pytest.approx(reference_protocol(active, codes), abs=1e-10)
    top = np.argsort(-codes.var(0), kind="stable")[: active.shape[1]]
    assert mcc_study_ood(true, codes) == pytest.approx(reference_protocol(active, codes[:, top]), abs=1e-10)


def test_permuted_copy_scores_one_in_both_protocols():
    g = torch.Generator().manual_seed(0)
    true = torch.rand(400, 25, generator=g) * (torch.rand(400, 25, generator=g) < 0.2)
    codes = true[:, torch.randperm(25, generator=g)] * 2.0
    assert mcc_study_id(true, codes) == pytest.approx(1.0, abs=1e-9)
    assert mcc_study_ood(true, codes) == pytest.approx(1.0, abs=1e-9)

"""Probes: logistic-regression accuracy and the best single feature's ROC-AUC."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

import dictlab.metrics.probes as probes
from dictlab.metrics import best_feature_auc, feature_aucs, probe_accuracy


def tied_codes(n: int, q: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse, integer-valued codes (many ties, zeros above all) and labels weakly tied to them."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, (n, q)) * (rng.random((n, q)) < 0.4)
    labels = (codes[:, 0] + rng.normal(0, 1.5, n) > 1).astype(int)
    return codes.astype(np.float32), labels


def sklearn_symmetric(codes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    aucs = np.array([roc_auc_score(labels, codes[:, j]) for j in range(codes.shape[1])])
    return np.maximum(aucs, 1 - aucs)


def test_feature_aucs_equal_sklearn_with_ties_and_constant_columns():
    codes, labels = tied_codes(400, 12, seed=0)
    codes[:, 5] = 2.0
    expected = sklearn_symmetric(codes, labels)
    expected[5] = 0.5
    np.testing.assert_allclose(feature_aucs(codes, labels).numpy(), expected, atol=1e-12)


def test_feature_aucs_are_blockwise_consistent(monkeypatch):
    codes, labels = tied_codes(100, 9, seed=1)
    whole = feature_aucs(codes, labels)
    monkeypatch.setattr(probes, "_AUC_BLOCK_ENTRIES", 100 * 2)
    torch.testing.assert_close(feature_aucs(codes, labels), whole, rtol=0, atol=0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(4, 60))
def test_auc_ignores_monotone_transforms_and_label_flips(seed, n):
    rng = np.random.default_rng(seed)
    codes = np.round(rng.normal(size=(n, 3)), 1)
    labels = np.arange(n) % 2
    rng.shuffle(labels)
    base = feature_aucs(codes, labels)
    torch.testing.assert_close(feature_aucs(np.exp(codes), labels), base, rtol=0, atol=1e-12)
    torch.testing.assert_close(feature_aucs(codes, 1 - labels), base, rtol=0, atol=1e-12)
    assert bool(((base >= 0.5) & (base <= 1.0)).all())


def test_best_feature_is_the_label_carrying_column():
    rng = np.random.default_rng(2)
    n, q = 2000, 30
    labels = (rng.random(n) < 0.3).astype(int)
    codes = rng.random((n, q))
    codes[:, 17] = labels + rng.normal(0, 0.6, n)
    ood_labels = (rng.random(n) < 0.5).astype(int)
    ood_codes = rng.random((n, q))
    ood_codes[:, 17] = ood_labels + rng.normal(0, 1.0, n)
    result = best_feature_auc(codes, labels, {"id": (codes, labels), "ood": (ood_codes, ood_labels)})
    assert result.feature == 17
    assert result.fit_auc == pytest.approx(roc_auc_score(labels, codes[:, 17]), abs=1e-12)
    assert result.aucs["id"] == result.fit_auc
    assert result.aucs["ood"] == pytest.approx(roc_auc_score(ood_labels, ood_codes[:, 17]), abs=1e-12)
    assert result.as_dict() == {"fit_auc": result.fit_auc, "auc_id": result.aucs["id"], "auc_ood": result.aucs["ood"]}


def test_single_class_sets():
    codes, labels = tied_codes(50, 4, seed=3)
    with pytest.raises(ValueError, match="single class"):
        best_feature_auc(codes, np.zeros(50, dtype=int), {})
    result = best_feature_auc(codes, labels, {"ones": (codes, np.ones(50, dtype=bool))})
    assert math.isnan(result.aucs["ones"])


def separable(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    w = torch.tensor([2.0, -1.0, 0.5, 0.0, 0.0, 1.0])
    score = x @ w
    keep = score.abs() > 0.5  # a margin around the separating hyperplane
    return x[keep] * 10, score[keep] > 0  # large scale: the standardisation must cope


@pytest.mark.parametrize(("C", "standardize"), [(1.0, True), (math.inf, False)])
def test_probe_is_perfect_on_linearly_separable_data(C, standardize):
    fit_x, fit_y = separable(400, seed=0)
    test_x, test_y = separable(400, seed=1)
    accuracy = probe_accuracy(
        fit_x, fit_y, {"fit": (fit_x, fit_y), "test": (test_x, test_y)}, C=C, standardize=standardize
    )
    assert accuracy == {"fit": 1.0, "test": 1.0}


def test_probe_accuracy_is_chance_level_on_unrelated_labels():
    rng = np.random.default_rng(4)
    x, labels = rng.normal(size=(4000, 5)), rng.random(4000) < 0.5
    accuracy = probe_accuracy(x[:2000], labels[:2000], {"test": (x[2000:], labels[2000:])})
    assert abs(accuracy["test"] - 0.5) < 0.05


def test_probe_input_errors():
    x = torch.randn(20, 3)
    with pytest.raises(ValueError, match="single class"):
        probe_accuracy(x, torch.ones(20, dtype=torch.bool), {})
    with pytest.raises(ValueError, match="binary"):
        probe_accuracy(x, torch.arange(20) % 3, {})
    with pytest.raises(ValueError, match="columns"):
        probe_accuracy(x, torch.arange(20) % 2, {"bad": (torch.randn(5, 4), torch.zeros(5))})

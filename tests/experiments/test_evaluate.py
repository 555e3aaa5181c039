"""The evaluation protocol as registered scores: each score runs when the data have what it needs, the
dictionary is matched once per model, and a new metric is one function plus its registration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from dictlab import metrics
from dictlab.data import make_compositional
from dictlab.experiments.evaluate import SCORES, Scoring, encode_splits, register_score, score_codes
from dictlab.experiments.method_task import run_method
from dictlab.inference import FistaSolver
from dictlab.models import SparseCodingModel


@pytest.fixture(scope="module")
def data():
    return make_compositional(num_latents=30, k=3, n_samples=400, seed=2)


@pytest.fixture(scope="module")
def oracle(data):
    return SparseCodingModel(data.dictionary, FistaSolver(max_iter=50))


def test_the_dictionary_is_matched_once_per_model_even_with_every_detail(data, oracle, monkeypatch):
    calls = []
    original = metrics.match_dictionaries
    monkeypatch.setattr(metrics, "match_dictionaries", lambda *a, **k: calls.append(1) or original(*a, **k))
    out = score_codes(oracle, data, encode_splits(oracle, data), details=True, study_metrics=True)
    assert len(calls) == 1
    assert {"dict_mean_angle", "support_precision_ood", "support_recall_id", "mcc_study_ood"} <= set(out)
    assert out["support_f1_ood"] > 0.8 and out["dict_mean_cosine"] == pytest.approx(1.0)


def test_options_add_scores_and_nothing_else_changes(data, oracle):
    codes = encode_splits(oracle, data)
    plain = score_codes(oracle, data, codes, seed=3)
    full = score_codes(oracle, data, codes, seed=3, details=True)
    assert "dict_mean_angle" not in plain and "support_precision_id" not in plain
    assert {k: full[k] for k in plain} == plain  # the chance floors draw the same permutations


def test_a_score_that_needs_labels_is_skipped_on_data_without_them(data, oracle):
    from dataclasses import replace

    from dictlab.data import Split

    unlabelled = replace(data, splits={name: Split(s.y, s.codes) for name, s in data.splits.items()})
    out = score_codes(oracle, unlabelled, encode_splits(oracle, unlabelled))
    assert "mcc_ood" in out and not any(key.startswith(("acc_", "auc_")) for key in out)


def test_single_class_training_labels_leave_the_probe_out_instead_of_failing(data, oracle):
    from dataclasses import replace

    from dictlab.data import Split

    train = data.train
    splits = {**data.splits, "train": Split(train.y, train.codes, torch.zeros_like(train.labels))}
    out = score_codes(oracle, replace(data, splits=splits), encode_splits(oracle, data))
    assert "mcc_ood" in out and "acc_ood" not in out and "auc_ood" not in out


@pytest.fixture
def atoms_used() -> Iterator[str]:
    """A metric a user adds: the number of code units a model uses on each split."""

    @register_score("test.atoms_used", needs=("codes",))
    def score(s: Scoring) -> dict[str, float]:
        return {
            f"atoms_used_{name}": float((codes != 0).any(dim=0).sum()) for name, (_, codes) in s.evaluation().items()
        }

    try:
        yield "test.atoms_used"
    finally:
        SCORES.remove("test.atoms_used")


def test_a_new_metric_is_one_function_and_its_registration(data, atoms_used):
    result = run_method("fista_oracle", data, seed=0)
    for split in ("id", "ood"):
        used = float((result.model.encode(data[split].y) != 0).any(dim=0).sum())  # type: ignore[union-attr]
        assert result.metrics[f"atoms_used_{split}"] == used > 0
    assert list(result.metrics)[-2:] == ["atoms_used_id", "atoms_used_ood"]  # registration order


def test_absorption_and_stationarity_scores_on_hierarchical_data() -> None:
    from dictlab.data import make_dataset

    data = make_dataset(
        {
            "generator": "hierarchical",
            "num_parents": 4,
            "children_per_parent": 2,
            "num_roots_free": 20,
            "k_parents": 2,
            "k_free": 1,
            "input_dim": 30,
            "n_samples": 800,
        },
        seed=0,
    )
    oracle = run_method("fista_oracle", data, seed=0).metrics
    assert oracle["absorption_id"] == 0.0 and oracle["absorption_ood"] == 0.0  # the truth absorbs nothing
    assert oracle["split_features"] == 0.0
    assert 0.0 <= oracle["stationarity_median"] <= oracle["stationarity_q95"] <= 1.0
    floor = run_method("random_dictionary", data, seed=0).metrics
    assert floor["stationarity_median"] > 0.9  # a random dictionary is far from stationary
    plain = run_method("fista_oracle", make_compositional(num_latents=20, k=3, n_samples=400, seed=0), seed=0)
    assert "absorption_ood" not in plain.metrics and "stationarity_median" in plain.metrics  # no hierarchy there

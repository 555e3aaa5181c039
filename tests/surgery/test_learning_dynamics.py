"""Learning dynamics: one record per logged step, and the last logged quality is the final dictionary's."""

from __future__ import annotations

import pytest

from dictlab.experiments import fit_method
from dictlab.experiments.tasks import TASKS
from dictlab.learners.dl_fista import DLFista, DLFistaConfig
from dictlab.metrics import match_dictionaries
from dictlab.models import FitContext, SparseCodingModel
from dictlab.surgery import dynamics_records

from .conftest import context, spec


def test_task_records_every_logged_step(data):
    params = {"method": "sae_relu", "overrides": {"n_steps": 100, "log_every": 25}}
    records = TASKS["surgery.learning_dynamics"].run(data, spec("surgery.learning_dynamics", **params), context())
    assert [r.step for r in records] == [25.0, 50.0, 75.0, 100.0]
    assert {r.label for r in records} == {"sae_relu"}
    for r in records:
        assert {"mean_cosine", "frac_close", "mse_loss", "l1_loss", "l0"} <= set(r.metrics)
        assert 0.0 < r.metrics["mean_cosine"] <= 1.0


def test_last_sae_record_is_the_final_dictionary(data):
    sae = fit_method("sae_topk", data, seed=0, overrides={"n_steps": 60, "log_every": 20}, track_dynamics=True)
    records = dynamics_records(sae, "sae_topk")
    assert [r.step for r in records] == [20.0, 40.0, 60.0]
    final = match_dictionaries(sae.dictionary, data.dictionary)
    assert records[-1].metrics["mean_cosine"] == pytest.approx(final.mean_cosine, abs=1e-12)


def test_dl_fista_rounds_and_final_dictionary(data):
    learner = DLFista(DLFistaConfig(width=data.num_latents, max_rounds=6, log_every=2))
    learner.fit(data.train.y, FitContext(seed=0, ground_truth=data.dictionary))
    records = dynamics_records(learner, "dl_fista")
    assert learner.rounds_run == 6  # min_rounds = 10: no early stop before
    assert [r.step for r in records] == [2.0, 4.0, 6.0]
    assert {"mean_cosine", "frac_close", "mse_loss", "l0", "lam"} <= set(records[0].metrics)
    final = match_dictionaries(learner.dictionary, data.dictionary)
    assert records[-1].metrics["mean_cosine"] == pytest.approx(final.mean_cosine, abs=1e-12)


def test_a_model_without_dynamics_is_refused(data):
    with pytest.raises(ValueError, match="logged no dictionary quality"):
        dynamics_records(SparseCodingModel(data.dictionary), "fista_oracle")
    sae = fit_method("sae_topk", data, seed=0, overrides={"n_steps": 20, "log_every": 10})  # no ground truth given
    with pytest.raises(ValueError, match="track_dynamics"):
        dynamics_records(sae, "sae_topk")


def test_dl_fista_task_when_registered_as_a_method(data):
    from dictlab.methods import METHODS

    if "dl_fista" not in METHODS:
        pytest.skip("dl_fista is not registered in dictlab.methods yet")
    params = {"method": "dl_fista", "overrides": {"max_rounds": 4, "log_every": 2}}
    records = TASKS["surgery.learning_dynamics"].run(data, spec("surgery.learning_dynamics", **params), context())
    assert [r.step for r in records] == [2.0, 4.0]
    assert all(0.0 < r.metrics["mean_cosine"] <= 1.0 for r in records)

"""The surgeries as tasks: registered under the contract's names, bad params stop before any run with a
message naming the field and what is allowed, and a run through ``execute_run`` stores its fitted model."""

from __future__ import annotations

import pytest

from dictlab.experiments.tasks import TASKS, check_spec, execute_run

from .conftest import spec

NAMES = [
    "frozen_decoder",
    "warmstart_decoder",
    "warmstart_encoder",
    "support_recovery",
    "learning_dynamics",
    "lambda_sensitivity",
]


def test_every_surgery_is_registered_with_a_check():
    for name in NAMES:
        assert f"surgery.{name}" in TASKS
        check_spec(spec(f"surgery.{name}"))  # the defaults are valid


@pytest.mark.parametrize(
    ("task", "params", "expected"),
    [
        ("surgery.frozen_decoder", {"method": "sae_topq"}, r"unknown method 'sae_topq'; allowed: .*sae_topk"),
        ("surgery.frozen_decoder", {"lam": -0.1}, r"params.lam=-0.1: .*greater than or equal to 0"),
        ("surgery.frozen_decoder", {"max_iters": 5}, r"unknown parameter 'max_iters'; allowed: .*max_iter"),
        (
            "surgery.frozen_decoder",
            {"overrides": {"n_stepz": 5}},
            r"unknown parameter\(s\) n_stepz; allowed: .*n_steps",
        ),
        ("surgery.frozen_decoder", {"recipe": "paper"}, r"params.recipe='paper'"),
        ("surgery.warmstart_encoder", {"budgets": [10, -1]}, r"budgets must be >= 0"),
        ("surgery.lambda_sensitivity", {"lams": [0.1, -2]}, r"every λ must be >= 0"),
        ("surgery.learning_dynamics", {"sae": "sae_topk"}, r"unknown parameter 'sae'; allowed: .*method"),
        ("surgery.frozen_decoder", {"sae": "sae_topk"}, r"unknown parameter 'sae'; allowed: .*method"),
        ("surgery.warmstart_decoder", {"dl_overrides": {"max_round": 5}}, r"dl_overrides.*max_round"),
        ("surgery.warmstart_decoder", {"dl_recipe": "fast"}, r"params.dl_recipe='fast'"),
    ],
)
def test_bad_params_fail_in_the_check_naming_the_field(task, params, expected):
    with pytest.raises(ValueError, match=expected):
        check_spec(spec(task, **params))


def test_execute_run_returns_records_timings_and_the_fitted_model():
    run = spec("surgery.support_recovery", method="sae_relu", overrides={"n_steps": 50})
    outcome = execute_run(run, artifacts=True)
    assert outcome.ok, outcome.error
    assert [r.label for r in outcome.records] == [
        "sae_relu",
        "support_lstsq+sae_relu",
        "fista+sae_relu",
        "fista_oracle",
    ]
    assert outcome.timings["fit_sae_relu_s"] > 0
    assert any(path.startswith("sae_relu/") and path.endswith(".safetensors") for path in outcome.artifacts)

"""Experiment specs: TOML → runs, presets, --quick, --set overrides, and errors that name the field."""

from __future__ import annotations

import json
import math

import pytest

from dictlab.cli import main
from dictlab.experiments.spec import apply_overrides, load_preset, load_spec, preset_names, validate_spec
from dictlab.experiments.store import ResultStore

TINY_SPEC = """
name = "tiny"
task = "method"
methods = ["fista_oracle", "sae_topk"]
seeds = [0, 1]

[data]
k = 3
n_samples = 400

[grid]
num_latents = [20, 30]

[method_params.sae_topk]
n_steps = 20
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SPEC)
    return path


def test_expansion_is_grid_times_methods_times_seeds(tiny):
    runs = load_spec(tiny).expand()
    assert len(runs) == 2 * 2 * 2
    assert {r.data["num_latents"] for r in runs} == {20, 30}
    topk = [r for r in runs if r.params["method"] == "sae_topk"]
    assert all(r.params["overrides"] == {"n_steps": 20} for r in topk)
    assert len({r.config_hash() for r in runs}) == len(runs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"methods": ["sae_nope"]}, "methods[0] = 'sae_nope' is not a method or a variant; allowed:"),
        ({"variants": {"sae_topk": {"method": "sae_relu"}}}, "variants.sae_topk is already a method's name"),
        ({"variants": {"v": {"method": "nope"}}, "methods": ["v"]}, "variants.v.method = 'nope' is not a method"),
        ({"grid": {"num_latents": [3]}}, "data at num_latents=3: k=3 must be smaller than num_latents=3"),
        ({"method_params": {"fista_oracle": {"lam": -0.1}}}, "lam"),
        ({"seedz": [0]}, "unknown field 'seedz'; allowed: name, description, task"),
        ({"grid": {"num_latent": [20]}}, "unknown grid field 'num_latent'; allowed:"),
        ({"seeds": [0, 0]}, "seeds must be distinct"),
    ],
)
def test_bad_specs_stop_before_any_run_naming_the_field(tiny, tmp_path, capsys, change, message):
    import tomllib

    raw = {**tomllib.loads(TINY_SPEC), **change}
    bad = tmp_path / "bad.toml"
    bad.write_text(_to_toml(raw))
    store = tmp_path / "store.sqlite"
    code = main(["sweep", str(bad), "--store", str(store), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not store.exists()


def _toml_value(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _to_toml(raw: dict) -> str:
    return "".join(f"{key} = {_toml_value(value)}\n" for key, value in raw.items())


def test_every_preset_expands_and_quick_is_smaller():
    assert {
        "vary-latents",
        "vary-samples",
        "vary-sparsity",
        "frozen-decoder",
        "warmstart-decoder",
        "warmstart-encoder",
        "support-recovery",
        "learning-dynamics",
        "lambda-sensitivity",
        "phase-transition",
        "large-latents",
    } <= set(preset_names())
    for name in preset_names():
        spec = load_preset(name)
        full, quick = spec.expand(), spec.with_quick().expand()
        # fewer runs, or (a single setting, lrb-table1) the same runs on less data
        smaller_data = all(
            q.data.get("n_samples", 0) < f.data.get("n_samples", 0) for q, f in zip(quick, full, strict=False)
        )
        assert 0 < len(quick) < len(full) or (len(quick) == len(full) and smaller_data), name


def test_vary_latents_uses_the_compressed_sensing_dimension():
    points = load_preset("vary-latents").points()
    assert {pt["generator"] for pt in points} == {"compositional"}
    dims = {pt["num_latents"]: pt["input_dim"] for pt in points}  # the canonical data make it explicit
    assert dims == {50: 33, 100: 47, 500: 79, 1000: 93, 5000: 125, 10000: 139}


def test_phase_transition_constant_sets_input_dim_and_dedupes():
    spec = validate_spec(
        {
            "name": "pt",
            "methods": ["fista_oracle"],
            "data": {"n_samples": 100},
            "grid": {"num_latents": [50], "k": [3], "cs_constant": [0.5, 1, 6, 7]},
        }
    )
    dims = [pt["input_dim"] for pt in spec.points()]
    assert dims == [math.ceil(0.5 * 3 * math.log(50 / 3)), math.ceil(3 * math.log(50 / 3)), 50]  # 6 and 7 both cap at p


def test_set_overrides_by_dotted_path(tiny):
    spec = apply_overrides(load_spec(tiny), ["data.n_samples=200", "seeds=[3]", "method_params.sae_topk.lr=0.01"])
    assert spec.data["n_samples"] == 200 and spec.seeds == [3]
    assert spec.method_params["sae_topk"] == {"n_steps": 20, "lr": 0.01}
    with pytest.raises(ValueError, match="unknown field 'dat'"):
        apply_overrides(spec, ["dat.k=3"])


@pytest.mark.slow
def test_sweep_cli_runs_resumes_lists_and_exports(tiny, tmp_path, capsys):
    store = tmp_path / "runs" / "results.sqlite"
    assert main(["sweep", str(tiny), "--store", str(store), "--quiet", "--set", "seeds=[0]"]) == 0
    assert "4 runs — 0 already done, 4 ran, 0 failed" in capsys.readouterr().out
    assert main(["sweep", str(tiny), "--store", str(store), "--quiet", "--set", "seeds=[0]"]) == 0
    assert "4 already done, 0 ran" in capsys.readouterr().out
    with ResultStore(store) as db:
        rows = db.records(experiment="tiny")
    oracle = [r for r in rows if r["label"] == "fista_oracle"]
    assert len(rows) == 4 and all(r["mcc_ood"] > 0.9 for r in oracle)
    assert main(["runs", "--store", str(store), "--status", "done"]) == 0
    assert "4 runs" in capsys.readouterr().out
    csv_path = tmp_path / "records.csv"
    assert main(["runs", "--store", str(store), "--export", str(csv_path)]) == 0
    assert csv_path.read_text().count("\n") == 5  # header + 4 records


def test_a_variant_runs_its_method_with_its_overrides_under_its_own_label(tiny, tmp_path):
    import tomllib

    raw = tomllib.loads(TINY_SPEC)
    raw["methods"] = ["sae_topk", "sae_topk_short"]
    raw["variants"] = {"sae_topk_short": {"method": "sae_topk", "overrides": {"n_steps": 5, "lr": 0.01}}}
    raw["seeds"], raw["grid"] = [0], {"num_latents": [20]}
    spec = validate_spec(raw)
    plain, variant = spec.expand()
    assert plain.params == {
        "method": "sae_topk",
        "overrides": {"n_steps": 20},
        "recipe": "dictlab",
        "study_metrics": False,
    }
    assert variant.params["method"] == "sae_topk" and variant.params["label"] == "sae_topk_short"
    assert variant.params["overrides"] == {"n_steps": 5, "lr": 0.01}  # the variant's over the method's method_params
    assert plain.run_id != variant.run_id
    from dictlab.experiments.sweep import run_sweep

    with ResultStore(tmp_path / "results.sqlite") as db:
        run_sweep(spec.expand(), db, progress=False)
        labels = sorted(r["label"] for r in db.records(experiment="tiny"))
    assert labels == ["sae_topk", "sae_topk_short"]


def test_a_variant_may_change_the_data_of_its_own_runs(tiny):
    import tomllib

    raw = tomllib.loads(TINY_SPEC)
    raw["methods"] = ["sae_topk", "sae_topk_wide"]
    raw["variants"] = {"sae_topk_wide": {"method": "sae_topk", "data": {"n_samples": 800}}}
    runs = validate_spec(raw).expand()
    samples = {(r.params.get("label", r.params["method"]), r.data["num_latents"]): r.data["n_samples"] for r in runs}
    assert samples == {
        ("sae_topk", 20): 400,
        ("sae_topk", 30): 400,
        ("sae_topk_wide", 20): 800,
        ("sae_topk_wide", 30): 800,
    }
    raw["variants"]["sae_topk_wide"]["data"] = {"n_samplez": 800}
    with pytest.raises(ValueError, match=r"variants\.sae_topk_wide\.data"):
        validate_spec(raw).expand()

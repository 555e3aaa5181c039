"""The dictlab command: one-line errors for bad arguments, and a tiny run end to end."""

from __future__ import annotations

import json

import pytest

from dictlab.cli import main, parse_seeds

TINY = ["--num-latents", "30", "--k", "3", "--n-samples", "600", "--seeds", "0", "--quiet"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "--methods", "sae_nope"], "--methods: unknown method 'sae_nope'; allowed: all, "),
        (["run", "--k", "100", "--num-latents", "50"], "k=100 must be smaller than num_latents=50"),
        (["run", "--k", "abc"], "argument --k: invalid int value: 'abc'"),
        (["run", "--seeds", "a,b"], "--seeds: cannot read 'a,b'"),
        (["run", "--set", "fista_oracle.lam=-1", "--methods", "fista_oracle"], "method fista_oracle: lam=-1"),
        (["run", "--set", "sae_topk.learning_rate=1", "--methods", "sae_topk"], "unknown parameter(s) learning_rate; allowed:"),
        (["run", "--set", "lr=1"], "--set: cannot read 'lr=1'; allowed form: METHOD.FIELD=VALUE"),
        (["run", "--set", "sae_topk.d_sae=5", "--methods", "sae_topk"], "d_sae follow(s) from the data"),
        (["run", "--recipe", "fast"], "argument --recipe: invalid choice: 'fast'"),
        (["run", "--device", "tpu"], "--device: unknown device 'tpu'; allowed: cpu, cuda"),
        (["run", "--n-samples", "-5"], "--n-samples: Input should be greater than or equal to 4"),
        (["run", "--jobs", "0"], "--jobs: must be >= 1, got 0"),
        (["fly"], "argument COMMAND: invalid choice: 'fly'"),
    ],
)
def test_bad_arguments_fail_in_one_line_naming_what_is_allowed(argv, expected, capsys, tmp_path):
    code = main([*argv, "--out", str(tmp_path / "r.json")] if argv[0] == "run" else argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert expected in err
    assert not (tmp_path / "r.json").exists()


def test_seed_ranges():
    assert parse_seeds("0-2") == [0, 1, 2]
    assert parse_seeds("4,1") == [4, 1]


@pytest.mark.slow
def test_run_writes_results_and_the_oracle_generalises(tmp_path, capsys):
    out = tmp_path / "results.json"
    code = main(["run", *TINY, "--methods", "fista_oracle,sae_topk", "--set", "sae_topk.n_steps=60", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["data"]["input_dim"] == 14 and [r["method"] for r in report["runs"]] == ["fista_oracle", "sae_topk"]
    oracle = report["summary"]["fista_oracle"]
    assert oracle["mcc_ood"]["mean"] > 0.9
    assert report["runs"][1]["overrides"] == {"n_steps": 60}
    table = capsys.readouterr().out
    assert "fista_oracle" in table and "MCC ood" in table


def test_methods_lists_every_registered_method(capsys):
    from dictlab.methods import METHODS

    assert main(["methods"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == METHODS.names()

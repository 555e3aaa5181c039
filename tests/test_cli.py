"""The dictlab command: one-line errors for bad arguments before any work or file is written, a run through the
results store end to end (reportable, resumable), and the edges where a traceback used to leak."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from dictlab.cli import main, parse_seeds

TINY = ["--num-latents", "30", "--k", "3", "--n-samples", "600", "--seeds", "0", "--quiet"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "--methods", "sae_nope"], "--methods: unknown method 'sae_nope'; allowed: all, "),
        (["run", "--methods", ","], "--methods: ',' names no method; allowed: all, "),
        (["run", "--k", "100", "--num-latents", "50"], "k=100 must be smaller than num_latents=50"),
        (["run", "--k", "abc"], "argument --k: invalid int value: 'abc'"),
        (["run", "--seeds", "a,b"], "--seeds: cannot read 'a,b'"),
        (["run", "--set", "fista_oracle.lam=-1", "--methods", "fista_oracle"], "method fista_oracle: lam=-1"),
        (
            ["run", "--set", "fista_oracle.lam=Infinity", "--methods", "fista_oracle"],
            "--set fista_oracle.lam=Infinity: 'Infinity': NaN and infinities are not allowed",
        ),
        (
            ["run", "--set", "sae_topk.learning_rate=1", "--methods", "sae_topk"],
            "unknown parameter(s) learning_rate; allowed:",
        ),
        (["run", "--set", "lr=1"], "--set: cannot read 'lr=1'; allowed form: METHOD.FIELD=VALUE"),
        (["run", "--set", "sae_topk.lr=1", "--methods", "fista_oracle"], "sae_topk is not among the methods run"),
        (["run", "--set", "sae_topk.d_in=5", "--methods", "sae_topk"], "d_in follow(s) from the data"),
        (["run", "--recipe", "fast"], "argument --recipe: invalid choice: 'fast'"),
        (["run", "--device", "tpu"], "--device: unknown device 'tpu'; allowed: cpu, cuda"),
        (["run", "--n-samples", "-5"], "--n-samples=-5: Input should be greater than or equal to 4"),
        (["run", "--n-samples", "4", "--methods", "pca"], "n_components=10 needs at least 10 training samples"),
        (["run", "--noise-std", "inf"], "--noise-std=inf: Input should be a finite number"),
        (["run", "--jobs", "0"], "--jobs: must be >= 1, got 0"),
        (["run", "--jobs", "many"], "--jobs: cannot read 'many'; allowed: auto or an integer >= 1"),
        (["run", "--threads", "0"], "--threads: must be >= 1, got 0"),
        (["run", "--generator", "nope"], "--generator: unknown generator 'nope'; allowed: compositional"),
        (["run", "--data", "num_latent=30"], "unknown field 'num_latent'; allowed: num_latents"),
        (["run", "--data", "oops"], "--data: cannot read 'oops'; allowed form: FIELD=VALUE"),
        (["fly"], "argument COMMAND: invalid choice: 'fly'"),
    ],
)
def test_bad_arguments_fail_in_one_line_naming_what_is_allowed(argv, expected, capsys, tmp_path):
    outputs = ["--out", str(tmp_path / "r.json"), "--store", str(tmp_path / "s.sqlite")]
    code = main([*argv, *outputs] if argv[0] == "run" else argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert expected in err
    assert list(tmp_path.iterdir()) == []  # nothing written: no results file, no store


def test_seed_ranges():
    assert parse_seeds("0-2") == [0, 1, 2]
    assert parse_seeds("4,1") == [4, 1]


def test_methods_lists_every_registered_method(capsys):
    from dictlab.methods import METHODS

    assert main(["methods"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == METHODS.names()


def test_generators_lists_each_generator_with_its_fields(capsys):
    assert main(["generators"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("compositional: ") and "  num_latents = 100" in out and "  cs_constant = 2.0" in out


@pytest.mark.slow
def test_a_run_goes_into_a_store_that_reports_exports_and_resumes(tmp_path, capsys):
    out, store = tmp_path / "results.json", tmp_path / "runs" / "results.sqlite"
    argv = [
        "run",
        *TINY,
        "--methods",
        "fista_oracle,sae_topk",
        "--set",
        "sae_topk.n_steps=60",
        "--out",
        str(out),
        "--store",
        str(store),
        "--jobs",
        "1",
    ]
    assert main(argv) == 0
    report = json.loads(out.read_text(), parse_constant=pytest.fail)  # strict JSON: no NaN or Infinity
    assert report["data"]["input_dim"] == 14 and report["data"]["generator"] == "compositional"
    assert [r["method"] for r in report["runs"]] == ["fista_oracle", "sae_topk"]
    assert report["summary"]["fista_oracle"]["mcc_ood"]["mean"] > 0.9
    assert report["runs"][1]["overrides"] == {"n_steps": 60} and report["store"] == str(store)
    table = capsys.readouterr().out
    assert "fista_oracle" in table and "MCC ood" in table and "2 runs (0 already in the store)" in table
    # the same command again finds every run done: nothing is refitted, the same table comes back
    assert main(argv) == 0
    assert "2 runs (2 already in the store)" in capsys.readouterr().out
    assert json.loads(out.read_text())["summary"] == report["summary"]
    assert main(["report", "--store", str(store), "--out", str(tmp_path / "report")]) == 0
    assert "fista_oracle" in (tmp_path / "report" / "index.html").read_text()
    assert main(["runs", "--store", str(store), "--export", str(tmp_path / "rows.csv")]) == 0
    assert (tmp_path / "rows.csv").read_text().count("\n") == 3  # header + two records


def test_a_run_without_a_store_uses_a_new_temporary_one_and_says_where(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert main(["run", *TINY, "--methods", "fista_oracle", "--out", str(tmp_path / "r.json"), "--jobs", "1"]) == 0
    (store,) = tmp_path.glob("dictlab-run-*/results.sqlite")
    assert f"dictlab report --store {store}" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["folder", "under_a_file"])
def test_an_unwritable_out_stops_before_any_training(tmp_path, capsys, where):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "r.json" if where == "under_a_file" else tmp_path
    code = main(["run", *TINY, "--methods", "fista_oracle", "--out", str(out), "--store", str(tmp_path / "s.sqlite")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("dictlab run: error: --out: ")
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x8f random bytes, not a database" * 40, "not a dictlab results store (not an SQLite database"),
        (b"", "is an empty file, not a dictlab results store"),
        (None, "is a folder"),
        ("other-sqlite", "not a dictlab results store (an SQLite database with tables theirs)"),
    ],
)
@pytest.mark.parametrize("command", ["runs", "report", "sweep"])
def test_a_store_that_is_not_one_is_refused_in_one_line_and_left_as_it_was(tmp_path, capsys, content, message, command):
    path = tmp_path / "store.sqlite"
    if content is None:
        path.mkdir()
    elif content == "other-sqlite":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE theirs (x)")
        db.commit()
        db.close()
    else:
        path.write_bytes(content)
    before = sorted(p.name for p in tmp_path.iterdir()), path.read_bytes() if path.is_file() else None
    argv = {
        "runs": ["runs"],
        "report": ["report", "--out", str(tmp_path / "rep")],
        "sweep": ["sweep", "--preset", "vary-latents", "--quick", "--set", 'methods=["fista_oracle"]'],
    }[command]
    code = main([*argv, "--store", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert message in err
    assert (sorted(p.name for p in tmp_path.iterdir()), path.read_bytes() if path.is_file() else None) == before
    if content == "other-sqlite":
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL


def test_report_into_an_existing_file_and_export_under_a_file_are_refused(tmp_path, capsys):
    from dictlab.experiments.store import ResultStore

    ResultStore(tmp_path / "s.sqlite").close()
    (tmp_path / "taken").write_text("mine")
    assert main(["report", "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "taken")]) == 2
    assert "--out: " in capsys.readouterr().err and (tmp_path / "taken").read_text() == "mine"
    assert main(["runs", "--store", str(tmp_path / "s.sqlite"), "--export", str(tmp_path / "taken" / "x.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dictlab runs: error: --export: ") and "is a file, not a folder" in err


def test_toml_seeds_must_be_integers(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('name = "x"\nmethods = ["fista_oracle"]\nseeds = [true, false]\n')
    assert main(["sweep", str(spec), "--store", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert "seeds.0=True: Input should be a valid integer" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.slow
def test_sigterm_keeps_finished_runs_and_prints_how_to_resume(tmp_path):
    store = tmp_path / "s.sqlite"
    argv = [
        sys.executable,
        "-m",
        "dictlab.cli",
        "run",
        *TINY,
        "--methods",
        "fista_oracle,sae_relu",
        "--jobs",
        "1",
        "--set",
        "sae_relu.n_steps=200000",
        "--store",
        str(store),
        "--out",
        str(tmp_path / "r.json"),
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.5)
        if store.exists():
            try:
                done = sqlite3.connect(store).execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0]
            except sqlite3.OperationalError:  # the file exists a moment before its tables do
                continue
            if done:
                break
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err and f"--store {store}" in err and "resume with: dictlab run" in err
    statuses = dict(sqlite3.connect(store).execute("SELECT method, status FROM runs"))
    assert statuses == {"fista_oracle": "done", "sae_relu": "running"}
    assert not (tmp_path / "r.json").exists()

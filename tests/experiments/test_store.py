"""Run specs and the SQLite results store: stable run ids, one transaction per finished run, flat exports."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dictlab.experiments.store import SCHEMA_VERSION, ResultStore
from dictlab.experiments.tasks import Record, RunSpec

DATA = {"num_latents": 24, "k": 3, "n_samples": 400}


def spec(seed: int = 0, method: str = "fista_oracle", **params: object) -> RunSpec:
    return RunSpec(experiment="unit", task="method", data=DATA, seed=seed, params={"method": method, **params})


@pytest.fixture
def store(tmp_path):
    with ResultStore(tmp_path / "runs" / "results.sqlite") as opened:
        yield opened


# --- run ids -------------------------------------------------------------------------------------------


def test_config_hash_is_the_same_in_another_process():
    one = spec(3, "sae_topk", overrides={"n_steps": 30, "lr": 0.001}, recipe="study")
    code = (
        "from dictlab.experiments.tasks import RunSpec; import sys; "
        "print(RunSpec.model_validate_json(sys.argv[1]).config_hash())"
    )
    # The other process gets the params with their keys in reverse order: the hash must not see it.
    reordered = json.loads(one.model_dump_json())
    reordered["params"] = dict(reversed(list(reordered["params"].items())))
    out = subprocess.run([sys.executable, "-c", code, json.dumps(reordered)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == one.config_hash()
    assert len(one.config_hash()) == 16 and int(one.config_hash(), 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"experiment": "other"},
        {"task": "surgery.frozen_decoder"},
        {"seed": 1},
        {"data": {**DATA, "k": 4}},
        {"data": {**DATA, "noise_std": 0.01}},
        {"params": {"method": "sae_topk"}},
        {"params": {"method": "fista_oracle", "overrides": {"lam": 0.1}}},
        {"params": {"method": "fista_oracle", "overrides": {"lam": 0.1000001}}},
        {"params": {"method": "fista_oracle", "recipe": "study"}},
    ],
)
def test_config_hash_changes_with_every_field(change):
    base = spec().model_dump()
    assert RunSpec(**{**base, **change}).config_hash() != spec().config_hash()


def test_data_is_normalised_to_the_full_config():
    explicit = RunSpec(experiment="unit", task="method", data={**DATA, "noise_std": 0.0, "num_ood": None}, seed=0,
                       params={"method": "fista_oracle"})
    assert explicit.config_hash() == spec().config_hash()
    assert spec().data["magnitude_power"] == 1.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"data": {"num_latents": 10, "k": 12}}, "k=12 must be smaller than num_latents=10"),
        ({"data": {"num_latent": 10}}, "num_latent"),
        ({"seed": -1}, "seed"),
        ({"params": {"lam": float("nan")}}, "finite JSON"),
        ({"params": {"x": object()}}, "finite JSON"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_specs_name_the_field(fields, message):
    base = {"experiment": "unit", "task": "method", "data": DATA, "seed": 0, "params": {}}
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        RunSpec(**{**base, **fields})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=60, deadline=None)
@given(params=st.dictionaries(st.text(max_size=6), json_values, max_size=5))
def test_config_hash_survives_json_round_trip_and_key_order(params):
    one = RunSpec(experiment="e", task="method", data=DATA, seed=1, params=params)
    reversed_keys = RunSpec(experiment="e", task="method", data=DATA, seed=1, params=dict(reversed(list(params.items()))))
    assert RunSpec.model_validate_json(one.model_dump_json()).config_hash() == one.config_hash()
    assert reversed_keys.config_hash() == one.config_hash()


# --- writing runs -------------------------------------------------------------------------------------


def test_store_file_uses_wal_full_sync_and_a_schema_version(store):
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.artifacts_dir == store.path.parent / "artifacts"


def test_a_store_of_another_schema_version_is_refused(tmp_path):
    path = tmp_path / "r.sqlite"
    ResultStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(ValueError, match="schema version \\[99\\]"):
        ResultStore(path)


def test_run_lifecycle_running_failed_done(store):
    a, b, c = spec(0), spec(1), spec(2)
    assert store.pending([a, b, a, c]) == [a, b, c]  # deduplicated, in order
    store.mark_running(a)
    store.mark_running(b)
    store.fail(b, "Traceback ...\nRuntimeError: boom")
    store.finish(a, [Record("fista_oracle", {"mcc_ood": 0.5})], {"total_s": 1.0}, {"torch": "x"})
    assert store.statuses() == {a.config_hash(): "done", b.config_hash(): "failed"}
    assert store.pending([a, b, c]) == [b, c]
    [failed] = store.runs(status="failed")
    assert failed.error.endswith("RuntimeError: boom") and failed.attempts == 1 and failed.finished_at is not None
    store.mark_running(b)  # a retry clears the error and counts the attempt
    [retried] = store.runs(status="running")
    assert (retried.run_id, retried.error, retried.attempts, retried.finished_at) == (b.config_hash(), None, 2, None)
    [done] = store.runs(status="done")
    assert done.spec == json.loads(a.canonical_json()) and done.timings == {"total_s": 1.0} and done.versions == {"torch": "x"}
    assert done.method == "fista_oracle" and done.seed == 0


def test_finishing_twice_replaces_the_records_instead_of_duplicating(store):
    a = spec()
    store.mark_running(a)
    store.finish(a, [Record("x", {"m": 1.0}), Record("x", {"m": 2.0}, step=1)], {})
    store.finish(a, [Record("y", {"m": 3.0}, step=5)], {})
    rows = store.records()
    assert [(r["label"], r["step"], r["m"]) for r in rows] == [("y", 5.0, 3.0)]
    store.fail(a, "error")
    assert store.records() == []  # a failed run has no records


def test_runs_filters_and_forget(store):
    a, b = spec(0), spec(0, "sae_topk")
    other = RunSpec(experiment="other", task="method", data=DATA, seed=0, params={"method": "fista_oracle"})
    for s, label in ((a, "fista_oracle"), (b, "sae_topk"), (other, "fista_oracle")):
        store.mark_running(s)
        store.finish(s, [Record(label, {"m": 1.0})], {})
    assert {r.run_id for r in store.runs(experiment="unit")} == {a.config_hash(), b.config_hash()}
    assert [r.run_id for r in store.runs(label="sae_topk")] == [b.config_hash()]
    assert [r.run_id for r in store.runs(method="fista_oracle", experiment="other")] == [other.config_hash()]
    assert store.runs(task="surgery.frozen_decoder") == []
    with pytest.raises(ValueError, match="unknown status 'finished'; allowed: running, done, failed"):
        store.runs(status="finished")
    assert store.forget([a.config_hash()]) == 1
    assert store.pending([a, b]) == [a] and len(store.records()) == 2
    assert store.integrity_check() == "ok"


# --- flat rows and export -----------------------------------------------------------------------------


def _filled_store(store: ResultStore) -> list[dict]:
    a = spec(0, overrides={"lam": 0.05})
    b = spec(1, "sae_topk", overrides={"n_steps": 30, "hidden": [1, 2]})
    store.finish(a, [Record("fista_oracle", {"mcc_ood": 1 / 3, "acc_id": 0.1 + 0.2})], {"total_s": 0.25})
    store.finish(b, [Record("sae_topk", {"mcc_ood": 2 / 7}, step=3), Record("sae_topk", {"mcc_ood": 1e-300}, step=4)], {})
    return store.records()


def test_records_are_flat_rows_with_run_metadata(store):
    rows = _filled_store(store)
    assert len(rows) == 3
    first = rows[0]
    assert first["label"] == "fista_oracle" and first["step"] is None and first["seed"] == 0
    assert first["data.num_latents"] == 24 and first["data.k"] == 3 and first["params.overrides.lam"] == 0.05
    assert first["mcc_ood"] == 1 / 3 and first["acc_id"] == 0.1 + 0.2 and first["timing.total_s"] == 0.25
    assert rows[1]["params.overrides.hidden"] == "[1, 2]"
    assert [r["step"] for r in store.records(label="sae_topk")] == [3.0, 4.0]
    clash = spec(7)
    store.finish(clash, [Record("clash", {"seed": 5.0, "label": 1.0})], {})
    [row] = store.records(label="clash")
    assert (row["seed"], row["label"], row["metric.seed"], row["metric.label"]) == (7, "clash", 5.0, 1.0)
    assert store.records(method="pca") == []


def test_csv_export_round_trips_every_metric_exactly(store, tmp_path):
    rows = _filled_store(store)
    path = store.export(tmp_path / "out" / "records.csv")
    with path.open(newline="") as handle:
        read = list(csv.DictReader(handle))
    assert len(read) == len(rows)
    for original, back in zip(rows, read):
        for key, value in original.items():
            if isinstance(value, float):
                assert float(back[key]) == value, key
            elif value is None:
                assert back[key] == ""
            else:
                assert back[key] == str(value)
        assert set(back) == set(read[0])  # one header: columns a row lacks are empty cells
    assert read[0]["step"] == "" and read[2]["acc_id"] == ""


def test_parquet_export_round_trips(store, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet export needs the optional package pyarrow")
    rows = _filled_store(store)
    table = pq.read_table(store.export(tmp_path / "records.parquet"))
    back = table.to_pylist()
    for original, read in zip(rows, back, strict=True):
        assert {k: v for k, v in read.items() if v is not None} == {k: v for k, v in original.items() if v is not None}


def test_parquet_without_pyarrow_says_what_to_install(store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ValueError, match="pip install pyarrow"):
        store.export(tmp_path / "records.parquet")
    with pytest.raises(ValueError, match="allowed suffixes: .csv, .parquet"):
        store.export(tmp_path / "records.xlsx")

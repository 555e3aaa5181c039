"""Run specs and the SQLite results store: stable run ids, one transaction per finished run, flat exports."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dictlab.experiments.runs import Record, RunSpec
from dictlab.experiments.store import SCHEMA_VERSION, ResultStore

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
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(reordered)], capture_output=True, text=True, check=True
    )
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
    explicit = RunSpec(
        experiment="unit",
        task="method",
        data={**DATA, "noise_std": 0.0, "num_ood": None},
        seed=0,
        params={"method": "fista_oracle"},
    )
    assert explicit.config_hash() == spec().config_hash()
    assert spec().data["magnitude_power"] == 1.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"data": {"num_latents": 10, "k": 12}}, "k=12 must be smaller than num_latents=10"),
        ({"data": {"num_latent": 10}}, "num_latent"),
        ({"seed": -1}, "seed"),
        ({"params": {"lam": float("nan")}}, "params.lam=nan: not a finite number"),
        ({"params": {"x": object()}}, "params.x=<object object at .*>: not a JSON value"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_specs_name_the_field(fields, message):
    base = {"experiment": "unit", "task": "method", "data": DATA, "seed": 0, "params": {}}
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        RunSpec(**{**base, **fields})


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=60, deadline=None)
@given(params=st.dictionaries(st.text(max_size=6), json_values, max_size=5))
def test_config_hash_survives_json_round_trip_and_key_order(params):
    one = RunSpec(experiment="e", task="method", data=DATA, seed=1, params=params)
    reversed_keys = RunSpec(
        experiment="e", task="method", data=DATA, seed=1, params=dict(reversed(list(params.items())))
    )
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
    for readonly in (False, True):
        with pytest.raises(ValueError, match="schema version 99, this dictlab reads versions up to 2"):
            ResultStore(path, readonly=readonly)


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
    assert (
        done.spec == json.loads(a.canonical_json())
        and done.timings == {"total_s": 1.0}
        and done.versions == {"torch": "x"}
    )
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
    store.finish(
        b, [Record("sae_topk", {"mcc_ood": 2 / 7}, step=3), Record("sae_topk", {"mcc_ood": 1e-300}, step=4)], {}
    )
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
    for original, back in zip(rows, read, strict=True):
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
    with pytest.raises(ValueError, match=r"allowed suffixes: .csv, .parquet"):
        store.export(tmp_path / "records.xlsx")


# --- opening: read-only, refusals, schema upgrades ------------------------------------------------------


def _bytes(path) -> bytes:
    return path.read_bytes()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: p.write_bytes(b"\x8f\x00not sqlite at all" * 64),
            "not a dictlab results store (not an SQLite database",
        ),
        (lambda p: p.write_bytes(b""), "is an empty file, not a dictlab results store"),
        (lambda p: sqlite3.connect(p).execute("CREATE TABLE mine (x)").connection.commit(), "tables mine"),
        (lambda p: p.mkdir(), "is a folder"),
    ],
)
def test_a_path_that_is_not_a_store_is_refused_and_left_untouched(tmp_path, make, message):
    path = tmp_path / "other.sqlite"
    make(path)
    before = sorted(tmp_path.rglob("*")), (path.read_bytes() if path.is_file() else None)
    for readonly in (True, False):
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            ResultStore(path, readonly=readonly)
    # no -wal, no tables
    assert (sorted(tmp_path.rglob("*")), (path.read_bytes() if path.is_file() else None)) == before


def test_read_only_never_writes_and_refuses_to(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        store.finish(spec(0), [Record("fista_oracle", {"mcc_ood": 0.9})], {"total_s": 1.0})
    before = path.read_bytes()
    with ResultStore(path, readonly=True) as reader:
        assert [r.status for r in reader.runs()] == ["done"] and reader.records()[0]["mcc_ood"] == 0.9
        with pytest.raises(ValueError, match="open read-only"):
            reader.mark_running(spec(1))
    assert path.read_bytes() == before  # (SQLite may leave its empty -wal/-shm index files beside a WAL database)
    with pytest.raises(ValueError, match="no results store at"):
        ResultStore(tmp_path / "missing.sqlite", readonly=True)


@pytest.mark.skipif(
    sys.platform == "win32" or (hasattr(os, "geteuid") and os.geteuid() == 0), reason="permissions do not bind root"
)
def test_a_store_that_may_not_be_written_is_refused_in_one_line(tmp_path):
    path = tmp_path / "r.sqlite"
    ResultStore(path).close()
    path.chmod(0o444)
    try:
        with pytest.raises(ValueError, match="permission denied"):
            ResultStore(path)
    finally:
        path.chmod(0o644)


def test_an_undefined_metric_is_stored_as_null_and_read_as_none(store):
    store.finish(spec(0), [Record("fista_oracle", {"auc_ood": float("nan"), "mcc_ood": 0.5})], {"total_s": 1.0})
    raw = store._db.execute("SELECT metrics_json FROM records").fetchone()[0]
    assert json.loads(raw) == {"auc_ood": None, "mcc_ood": 0.5} and "NaN" not in raw
    assert store.records()[0]["auc_ood"] is None


V1_DATA = {
    "num_latents": 24,
    "k": 3,
    "n_samples": 400,
    "input_dim": None,
    "num_ood": None,
    "magnitude_power": 1.0,
    "label_threshold": 0.5,
    "noise_std": 0.0,
}


def _v1_store(path) -> None:
    """A store as dictlab 0.1 wrote it: schema 1, data without a generator, a surgery naming its subject `sae`."""
    from dictlab.experiments.store import _SCHEMA

    db = sqlite3.connect(path)
    db.executescript(_SCHEMA)
    db.execute("INSERT INTO schema_version VALUES (1)")
    runs = [
        (
            "a" * 16,
            "method",
            {"method": "fista_oracle", "overrides": {}, "recipe": "dictlab", "study_metrics": False},
            "done",
            "fista_oracle",
        ),
        ("b" * 16, "surgery.frozen_decoder", {"sae": "sae_topk", "overrides": {}, "recipe": "dictlab"}, "done", None),
        (
            "c" * 16,
            "method",
            {"method": "sae_topk", "overrides": {}, "recipe": "dictlab", "study_metrics": False},
            "running",
            "sae_topk",
        ),
    ]
    for run_id, task, params, status, method in runs:
        spec_json = json.dumps({"experiment": "old", "task": task, "data": V1_DATA, "seed": 0, "params": params})
        db.execute(
            "INSERT INTO runs (run_id, experiment, task, method, seed, spec_json, status, attempts) "
            "VALUES (?, 'old', ?, ?, 0, ?, ?, 1)",
            (run_id, task, method, spec_json, status),
        )
        if status == "done":
            db.execute(
                "INSERT INTO records VALUES (?, 0, ?, NULL, ?)", (run_id, method or "sae_topk", '{"mcc_ood": 0.8}')
            )
    db.commit()
    db.close()


def _today(task: str, params: dict) -> RunSpec:
    return RunSpec(experiment="old", task=task, data={"generator": "compositional", **V1_DATA}, seed=0, params=params)


def test_a_schema_1_store_is_read_in_todays_terms_without_touching_the_file(tmp_path):
    path = tmp_path / "old.sqlite"
    _v1_store(path)
    before = path.read_bytes()
    with ResultStore(path, readonly=True) as store:
        runs = {run.task: run for run in store.runs(status="done")}
        assert runs["surgery.frozen_decoder"].spec["params"]["method"] == "sae_topk"
        assert runs["surgery.frozen_decoder"].method == "sae_topk"  # the column follows the subject
        assert runs["method"].spec["data"]["generator"] == "compositional"
        assert runs["method"].spec["data"]["input_dim"] == 13  # derived fields explicit, as in a new run
        assert (
            runs["method"].run_id
            == _today(
                "method", {"method": "fista_oracle", "overrides": {}, "recipe": "dictlab", "study_metrics": False}
            ).run_id
        )
        assert [row["mcc_ood"] for row in store.records()] == [0.8, 0.8]
    assert path.read_bytes() == before
    assert sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchone() == (1,)


def test_a_schema_1_store_is_upgraded_on_write_and_resumes_without_rerunning(tmp_path):
    path = tmp_path / "old.sqlite"
    _v1_store(path)
    (tmp_path / "artifacts" / ("b" * 16) / "sae_topk").mkdir(parents=True)
    surgery = _today("surgery.frozen_decoder", {"method": "sae_topk", "overrides": {}, "recipe": "dictlab"})
    fista = _today("method", {"method": "fista_oracle", "overrides": {}, "recipe": "dictlab", "study_metrics": False})
    cut_off = _today("method", {"method": "sae_topk", "overrides": {}, "recipe": "dictlab", "study_metrics": False})
    with ResultStore(path) as store:
        assert store.statuses() == {fista.run_id: "done", surgery.run_id: "done", cut_off.run_id: "running"}
        assert store.pending([fista, surgery, cut_off]) == [cut_off]  # what was done is not run again
        assert store.integrity_check() == "ok"
        assert len(store.records()) == 2
    assert (tmp_path / "artifacts" / surgery.run_id / "sae_topk").is_dir()
    assert not (tmp_path / "artifacts" / ("b" * 16)).exists()
    assert sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)

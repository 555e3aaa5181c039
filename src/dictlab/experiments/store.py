"""The results store: one SQLite file that never loses or half-writes a run.

Tables (schema version 2):

* ``runs``: one row per run id (the spec's hash) with the full spec JSON, status
  (``running`` → ``done`` | ``failed``), per-phase timings, package versions, error text, timestamps, attempts;
* ``records``: the run's measurements, ``(run_id, idx)`` unique, metrics as strict JSON (an undefined
  metric is ``null``).

A run is marked ``running`` before it executes and finished — status ``done`` plus all its records — in one
transaction, so a run killed at any instant is either complete or visibly ``running`` (and re-run on resume).
WAL journal with ``synchronous=FULL``: a committed run survives a power cut, readers never block the writer.
Only the driver process writes. The store imports nothing but the pure run records (``runs.py``): no torch.

Opening: ``ResultStore(path)`` creates a new store or opens an existing dictlab store for writing;
``ResultStore(path, readonly=True)`` (what ``dictlab runs`` and ``dictlab report`` use) never writes to the
database — not even the WAL switch (SQLite itself may create its empty ``-wal``/``-shm`` index files beside a
store in WAL mode). Either refuses, in one line, a path that is a folder, a file that is not a dictlab store (an
empty file, another program's SQLite database, random bytes) or a store it may not write.

Schema 1 (dictlab 0.1: data tables without a ``generator``, surgeries naming their subject ``sae``) is
upgraded when opened for writing, in one transaction: every spec is rewritten to today's canonical form
(``generator = "compositional"``, derived data fields explicit, ``params.sae`` → ``params.method``), its run
id recomputed and its artifacts folder renamed, so a sweep resumes on it without re-running what is done.
Opened read-only, a schema-1 file is upgraded in a copy in memory and read from there; the file is untouched.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dictlab.experiments.runs import Record, RunSpec, finite_or_none, package_versions

SCHEMA_VERSION = 2
DEFAULT_STORE_PATH = Path("dictlab-runs") / "results.sqlite"
STATUSES = ("running", "done", "failed")
# Columns of every flat record row, before the data fields, params and metrics.
RECORD_COLUMNS = ("run_id", "experiment", "task", "method", "seed", "label", "step")
_TABLES = {"schema_version", "runs", "records"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    task TEXT NOT NULL,
    method TEXT,
    seed INTEGER NOT NULL,
    spec_json TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    timings_json TEXT,
    versions_json TEXT,
    error TEXT,
    started_at TEXT,
    finished_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS records (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    label TEXT NOT NULL,
    step REAL,
    metrics_json TEXT NOT NULL,
    PRIMARY KEY (run_id, idx)
);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs(experiment, status);
CREATE INDEX IF NOT EXISTS records_by_label ON records(label);
"""


@dataclass(frozen=True)
class StoredRun:
    """One row of ``runs``; ``spec`` is the stored JSON as a dict (not re-validated, so old runs always load)."""

    run_id: str
    experiment: str
    task: str
    method: str | None
    seed: int
    status: str
    spec: dict[str, Any]
    timings: dict[str, float]
    versions: dict[str, str]
    error: str | None
    started_at: str | None
    finished_at: str | None
    attempts: int


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class StoreError(ValueError):
    """A path that cannot serve as a results store (the message names it and says why)."""


class ResultStore:
    """Runs and their records in the SQLite file ``path`` (default ``./dictlab-runs/results.sqlite``).

    readonly : open an existing store without writing anything (see the module docstring).
    Learned models of a run live in ``artifacts_dir / run_id`` beside the file. Use as a context manager or
    call ``close()``. One instance per process; the connection is not shared with workers.
    """

    def __init__(self, path: str | Path = DEFAULT_STORE_PATH, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            self._db = _open_readonly(self.path)
        else:
            self._db = _open_for_writing(self.path)

    # --- plumbing -------------------------------------------------------------------------------------

    @property
    def artifacts_dir(self) -> Path:
        """Folder of learned models: ``artifacts_dir / run_id / label`` (safetensors + JSON)."""
        return self.path.parent / "artifacts"

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise StoreError(f"store {self.path} is open read-only; open it with ResultStore(path) to write")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``"ok"`` for a sound file."""
        return "\n".join(row[0] for row in self._db.execute("PRAGMA integrity_check"))

    # --- writing (driver process only) ------------------------------------------------------------------

    def _upsert_run(self, spec: RunSpec, status: str, **columns: Any) -> None:
        base = {
            "run_id": spec.run_id,
            "experiment": spec.experiment,
            "task": spec.task,
            "method": spec.method,
            "seed": spec.seed,
            "spec_json": spec.canonical_json(),
            "status": status,
            **columns,
        }
        names = ", ".join(base)
        marks = ", ".join("?" for _ in base)
        updates = ", ".join(f"{name} = excluded.{name}" for name in base if name != "run_id")
        self._db.execute(
            f"INSERT INTO runs ({names}) VALUES ({marks}) ON CONFLICT(run_id) DO UPDATE SET {updates}",
            tuple(base.values()),
        )

    def mark_running(self, spec: RunSpec) -> None:
        """Record that ``spec`` starts now (attempts + 1); a run killed from here on stays ``running``."""
        with self._transaction():
            row = self._db.execute("SELECT attempts FROM runs WHERE run_id = ?", (spec.run_id,)).fetchone()
            self._upsert_run(
                spec, "running", started_at=_now(), finished_at=None, error=None, attempts=(row[0] if row else 0) + 1
            )

    def finish(
        self,
        spec: RunSpec,
        records: Sequence[Record],
        timings: dict[str, float],
        versions: dict[str, str] | None = None,
    ) -> None:
        """Store a finished run — status ``done``, timings, versions and all records — in one transaction."""
        run_id = spec.run_id
        rows = [
            (
                run_id,
                idx,
                str(r[0]),
                None if len(r) < 3 or r[2] is None else float(r[2]),
                json.dumps(finite_or_none(r[1]), allow_nan=False),
            )
            for idx, r in enumerate(records)
        ]
        with self._transaction():
            row = self._db.execute("SELECT attempts, started_at FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            attempts, started = (row[0], row[1]) if row else (1, None)
            self._upsert_run(
                spec,
                "done",
                timings_json=json.dumps(finite_or_none(timings), allow_nan=False),
                versions_json=json.dumps(versions if versions is not None else package_versions(), sort_keys=True),
                error=None,
                started_at=started or _now(),
                finished_at=_now(),
                attempts=max(attempts, 1),
            )
            self._db.execute("DELETE FROM records WHERE run_id = ?", (run_id,))
            self._db.executemany(
                "INSERT INTO records (run_id, idx, label, step, metrics_json) VALUES (?, ?, ?, ?, ?)", rows
            )

    def fail(
        self,
        spec: RunSpec,
        error: str,
        timings: dict[str, float] | None = None,
        versions: dict[str, str] | None = None,
    ) -> None:
        """Store a run as ``failed`` with its error (traceback) text; it is re-tried by the next sweep."""
        run_id = spec.run_id
        with self._transaction():
            row = self._db.execute("SELECT attempts, started_at FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            attempts, started = (row[0], row[1]) if row else (1, None)
            self._upsert_run(
                spec,
                "failed",
                timings_json=json.dumps(finite_or_none(timings or {}), allow_nan=False),
                versions_json=json.dumps(versions or {}, sort_keys=True),
                error=error,
                started_at=started or _now(),
                finished_at=_now(),
                attempts=max(attempts, 1),
            )
            self._db.execute("DELETE FROM records WHERE run_id = ?", (run_id,))

    def forget(self, run_ids: Iterable[str]) -> int:
        """Delete runs (and their records) so the next sweep runs them again; returns how many were deleted."""
        ids = list(run_ids)
        with self._transaction():
            # rowcount counts the runs only; their records go by ON DELETE CASCADE
            return self._db.executemany("DELETE FROM runs WHERE run_id = ?", [(i,) for i in ids]).rowcount

    # --- reading ---------------------------------------------------------------------------------------

    def statuses(self) -> dict[str, str]:
        """Status of every stored run by run id."""
        return dict(self._db.execute("SELECT run_id, status FROM runs"))

    def pending(self, specs: Iterable[RunSpec]) -> list[RunSpec]:
        """The specs still to run (not ``done``), deduplicated by run id, in their given order."""
        done = {row[0] for row in self._db.execute("SELECT run_id FROM runs WHERE status = 'done'")}
        out: dict[str, RunSpec] = {}
        for spec in specs:
            run_id = spec.run_id
            if run_id not in done and run_id not in out:
                out[run_id] = spec
        return list(out.values())

    def runs(
        self,
        experiment: str | None = None,
        status: str | None = None,
        task: str | None = None,
        label: str | None = None,
        method: str | None = None,
    ) -> list[StoredRun]:
        """Stored runs matching every filter given (``label``: runs with a record of that label), oldest first."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; allowed: {', '.join(STATUSES)}")
        where, args = _filters(experiment=experiment, status=status, task=task, method=method)
        if label is not None:
            where.append("run_id IN (SELECT run_id FROM records WHERE label = ?)")
            args.append(label)
        sql = (
            "SELECT run_id, experiment, task, method, seed, status, spec_json, timings_json, versions_json, error, "
            "started_at, finished_at, attempts FROM runs"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY started_at, run_id"
        )
        return [
            StoredRun(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                json.loads(r[6]),
                json.loads(r[7]) if r[7] else {},
                json.loads(r[8]) if r[8] else {},
                r[9],
                r[10],
                r[11],
                r[12],
            )
            for r in self._db.execute(sql, args)
        ]

    def records(
        self,
        experiment: str | None = None,
        task: str | None = None,
        label: str | None = None,
        method: str | None = None,
    ) -> list[dict[str, Any]]:
        """Records of ``done`` runs as flat rows: run metadata, label, step, ``data.<field>``, ``params.<key>``
        (nested keys dotted, lists as JSON text), ``timing.<phase>`` of the run, then one column per metric
        (``metric.<name>`` where a metric's name equals a metadata column, e.g. ``seed``)."""
        where, args = _filters(experiment=experiment, task=task, method=method, prefix="runs.")
        where.append("runs.status = 'done'")
        if label is not None:
            where.append("records.label = ?")
            args.append(label)
        sql = (
            "SELECT runs.run_id, runs.experiment, runs.task, runs.method, runs.seed, records.label, records.step, "
            "runs.spec_json, runs.timings_json, records.metrics_json FROM records JOIN runs USING (run_id) WHERE "
            + " AND ".join(where)
            + " ORDER BY runs.started_at, runs.run_id, records.idx"
        )
        rows = []
        for (
            run_id,
            experiment_,
            task_,
            method_,
            seed,
            label_,
            step,
            spec_json,
            timings_json,
            metrics_json,
        ) in self._db.execute(sql, args):
            spec = json.loads(spec_json)
            row: dict[str, Any] = dict(
                zip(RECORD_COLUMNS, (run_id, experiment_, task_, method_, seed, label_, step), strict=True)
            )
            row.update(_flatten(spec.get("data", {}), "data."))
            row.update(_flatten(spec.get("params", {}), "params."))
            row.update({f"timing.{k}": v for k, v in (json.loads(timings_json) if timings_json else {}).items()})
            for name, value in json.loads(metrics_json).items():
                row[f"metric.{name}" if name in row else name] = value  # never shadow the run's metadata
            rows.append(row)
        return rows

    # --- export ----------------------------------------------------------------------------------------

    def export(self, path: str | Path, **filters: Any) -> Path:
        """Write ``records(**filters)`` to ``path``: CSV for ``.csv``, Parquet for ``.parquet``."""
        path = Path(path)
        writers = {".csv": write_csv, ".parquet": write_parquet}
        if path.suffix not in writers:
            raise ValueError(f"cannot export to {path.name!r}; allowed suffixes: {', '.join(writers)}")
        check_writable_file(path)
        return writers[path.suffix](self.records(**filters), path)


def _filters(prefix: str = "", **values: Any) -> tuple[list[str], list[Any]]:
    where, args = [], []
    for name, value in values.items():
        if value is not None:
            where.append(f"{prefix}{name} = ?")
            args.append(value)
    return where, args


def _flatten(value: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            out.update(_flatten(item, f"{prefix}{key}."))
        elif isinstance(item, list):
            out[f"{prefix}{key}"] = json.dumps(item)
        else:
            out[f"{prefix}{key}"] = item
    return out


def columns_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Every key of ``rows`` in first-seen order."""
    return list(dict.fromkeys(key for row in rows for key in row))


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """CSV with one column per key of any row (empty cell where a row lacks it); floats in round-trip repr."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns_of(rows), restval="")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return path


def write_parquet(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Parquet via pyarrow (optional dependency); a column mixing types is written as text."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(
            "Parquet export needs pyarrow: pip install pyarrow  (or: pip install 'dictlab[parquet]'); "
            "CSV export (.csv) needs nothing extra"
        ) from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {}
    for name in columns_of(rows):
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[name] = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    pq.write_table(pa.table(columns), path)
    return path


# --- opening ------------------------------------------------------------------------------------------------


def check_writable_file(path: Path) -> None:
    """Raise StoreError unless a file can be written at ``path``: not a folder, no file among its parents, the
    first existing parent writable."""
    if path.is_dir():
        raise StoreError(f"{path} is a folder; give a file path")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise StoreError(f"cannot write {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise StoreError(f"cannot write {path}: permission denied")


def _tables(db: sqlite3.Connection, path: Path) -> set[str]:
    try:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path} is not a dictlab results store (not an SQLite database: {err})") from None


def _schema_version(db: sqlite3.Connection, path: Path) -> int:
    """The store's schema version; StoreError for a file that is not a dictlab store."""
    tables = _tables(db, path)
    if not tables >= _TABLES:
        what = "an empty database" if not tables else f"an SQLite database with tables {', '.join(sorted(tables))}"
        raise StoreError(f"{path} is not a dictlab results store ({what}); give a new path or a store dictlab wrote")
    found = [row[0] for row in db.execute("SELECT version FROM schema_version")]
    if len(found) != 1 or not isinstance(found[0], int):
        raise StoreError(f"{path} has a damaged schema_version table ({found}); it is not a store this dictlab wrote")
    if found[0] > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has store schema version {found[0]}, this dictlab reads versions up to {SCHEMA_VERSION}; "
            "use the dictlab version that wrote it"
        )
    return found[0]


def _check_existing(path: Path) -> None:
    if path.is_dir():
        raise StoreError(f"store path {path} is a folder; give the path of a .sqlite file")
    if path.exists() and path.stat().st_size == 0:
        raise StoreError(f"{path} is an empty file, not a dictlab results store; remove it or give another path")


def _open_readonly(path: Path) -> sqlite3.Connection:
    _check_existing(path)
    if not path.exists():
        raise StoreError(f"no results store at {path}; run `dictlab run` or `dictlab sweep` first")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60.0, isolation_level=None)
        version = _schema_version(db, path)
    except sqlite3.OperationalError as err:
        raise StoreError(f"cannot read the store {path}: {err}") from None
    if version == SCHEMA_VERSION:
        return db
    memory = sqlite3.connect(":memory:", isolation_level=None)
    db.backup(memory)
    db.close()
    memory.execute("BEGIN")
    _migrate(memory, from_version=version)
    memory.execute("COMMIT")
    return memory


def _open_for_writing(path: Path) -> sqlite3.Connection:
    _check_existing(path)
    check_writable_file(path)
    existed = path.exists()
    if existed:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as probe:
            _schema_version(probe, path)  # refuses another program's database before anything is written
        probe.close()
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE … COMMIT), never implicit.
    db = sqlite3.connect(path, timeout=60.0, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        renamed: list[tuple[str, str]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            if existed:
                version = _schema_version(db, path)
                if version < SCHEMA_VERSION:
                    renamed = _migrate(db, from_version=version)
            else:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    except sqlite3.OperationalError as err:
        db.close()
        raise StoreError(f"cannot write the store {path}: {err}") from None
    artifacts = path.parent / "artifacts"
    for old_id, new_id in renamed:  # after the commit: a folder is renamed only once its run's new id is stored
        if (artifacts / old_id).is_dir() and not (artifacts / new_id).exists():
            (artifacts / old_id).rename(artifacts / new_id)
    return db


# --- schema upgrades ----------------------------------------------------------------------------------------


def upgrade_spec_v1(spec: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 spec in today's terms: the data name their generator, surgeries name their subject ``method``."""
    data = {"generator": "compositional", **spec.get("data", {})}
    params = dict(spec.get("params", {}))
    if str(spec.get("task", "")).startswith("surgery.") and "sae" in params:
        params["method"] = params.pop("sae")
    return {**spec, "data": data, "params": params}


def _migrate(db: sqlite3.Connection, *, from_version: int) -> list[tuple[str, str]]:
    """Rewrite a schema-1 store to schema 2 inside the caller's transaction (see the module docstring); returns
    the (old, new) run ids of the runs kept, whose artifact folders the caller renames after committing.

    A spec that no longer validates keeps its row and id (it is shown, never resumed). Two old runs that map to
    one new id (the same data written two ways) keep the better one: done over failed over running, then the
    later finished.
    """
    if from_version != 1:
        raise StoreError(f"no upgrade from store schema version {from_version}")
    db.execute("PRAGMA defer_foreign_keys = ON")  # ids change in both tables before the commit checks them
    rank = {"done": 2, "failed": 1, "running": 0}
    rows = db.execute("SELECT run_id, spec_json, status, finished_at FROM runs").fetchall()
    renames: dict[str, tuple[str, str, str | None]] = {}  # old id -> (new id, new spec json, method)
    best: dict[str, tuple[int, str, str]] = {}  # new id -> (rank, finished_at, old id)
    for old_id, spec_json, status, finished in rows:
        try:
            spec = RunSpec.model_validate(upgrade_spec_v1(json.loads(spec_json)))
        except (ValueError, TypeError):
            continue
        new_id = spec.run_id
        renames[old_id] = (new_id, spec.canonical_json(), spec.method)
        candidate = (rank.get(status, 0), finished or "", old_id)
        if new_id not in best or candidate > best[new_id]:
            best[new_id] = candidate
    keep = {old for _, _, old in best.values()}
    for old_id in renames:
        if old_id not in keep:
            db.execute("DELETE FROM records WHERE run_id = ?", (old_id,))
            db.execute("DELETE FROM runs WHERE run_id = ?", (old_id,))
    for old_id, (new_id, spec_json, method) in renames.items():
        if old_id in keep:
            db.execute("UPDATE records SET run_id = ? WHERE run_id = ?", (new_id, old_id))
            db.execute(
                "UPDATE runs SET run_id = ?, spec_json = ?, method = ? WHERE run_id = ?",
                (new_id, spec_json, method, old_id),
            )
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
    return [(old, new) for old, (new, _, _) in renames.items() if old in keep and new != old]

"""The results store: one SQLite file that never loses or half-writes a run.

Tables (schema version 1):

* ``runs``: one row per run id (the spec's config hash) with the full spec JSON, status
  (``running`` → ``done`` | ``failed``), per-phase timings, package versions, error text, timestamps, attempts;
* ``records``: the run's measurements, ``(run_id, idx)`` unique, metrics as JSON.

A run is marked ``running`` before it executes and finished — status ``done`` plus all its records — in one
transaction, so a run killed at any instant is either complete or visibly ``running`` (and re-run on resume).
WAL journal with ``synchronous=FULL``: a committed run survives a power cut, readers never block the writer.
Only the sweep's driver process writes; the store never imports a model or torch code of its own.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dictlab.experiments.tasks import Record, RunSpec

SCHEMA_VERSION = 1
DEFAULT_STORE_PATH = Path("dictlab-runs") / "results.sqlite"
STATUSES = ("running", "done", "failed")
# Columns of every flat record row, before the data fields, params and metrics.
RECORD_COLUMNS = ("run_id", "experiment", "task", "method", "seed", "label", "step")

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


class ResultStore:
    """Runs and their records in the SQLite file ``path`` (default ``./dictlab-runs/results.sqlite``).

    Learned models of a run live in ``artifacts_dir / run_id`` beside the file. Use as a context manager or
    call ``close()``. One instance per process; the connection is not shared with workers.
    """

    def __init__(self, path: str | Path = DEFAULT_STORE_PATH) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise ValueError(f"store path {self.path} exists and is not a file; give the path of a .sqlite file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE … COMMIT), never implicit.
        self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            found = [row[0] for row in self._db.execute("SELECT version FROM schema_version")]
            if not found:
                self._db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif found != [SCHEMA_VERSION]:
                raise ValueError(
                    f"{self.path} has store schema version {found}, this dictlab reads version {SCHEMA_VERSION}; "
                    "use a new store path or the dictlab version that wrote it"
                )

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
        method = spec.params.get("method")
        base = {
            "run_id": spec.config_hash(),
            "experiment": spec.experiment,
            "task": spec.task,
            "method": method if isinstance(method, str) else None,
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
            row = self._db.execute("SELECT attempts FROM runs WHERE run_id = ?", (spec.config_hash(),)).fetchone()
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
        from dictlab.experiments.tasks import package_versions

        run_id = spec.config_hash()
        rows = [
            (run_id, idx, str(r[0]), None if len(r) < 3 or r[2] is None else float(r[2]), json.dumps(_floats(r[1])))
            for idx, r in enumerate(records)
        ]
        with self._transaction():
            row = self._db.execute("SELECT attempts, started_at FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            attempts, started = (row[0], row[1]) if row else (1, None)
            self._upsert_run(
                spec,
                "done",
                timings_json=json.dumps(_floats(timings)),
                versions_json=json.dumps(versions if versions is not None else package_versions(), sort_keys=True),
                error=None,
                started_at=started or _now(),
                finished_at=_now(),
                attempts=max(attempts, 1),
            )
            self._db.execute("DELETE FROM records WHERE run_id = ?", (run_id,))
            self._db.executemany("INSERT INTO records (run_id, idx, label, step, metrics_json) VALUES (?, ?, ?, ?, ?)", rows)

    def fail(self, spec: RunSpec, error: str, timings: dict[str, float] | None = None, versions: dict[str, str] | None = None) -> None:
        """Store a run as ``failed`` with its error (traceback) text; it is re-tried by the next sweep."""
        run_id = spec.config_hash()
        with self._transaction():
            row = self._db.execute("SELECT attempts, started_at FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            attempts, started = (row[0], row[1]) if row else (1, None)
            self._upsert_run(
                spec,
                "failed",
                timings_json=json.dumps(_floats(timings or {})),
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
            run_id = spec.config_hash()
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
                r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]),
                json.loads(r[7]) if r[7] else {}, json.loads(r[8]) if r[8] else {}, r[9], r[10], r[11], r[12],
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
        for run_id, experiment_, task_, method_, seed, label_, step, spec_json, timings_json, metrics_json in self._db.execute(sql, args):
            spec = json.loads(spec_json)
            row: dict[str, Any] = dict(zip(RECORD_COLUMNS, (run_id, experiment_, task_, method_, seed, label_, step)))
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
        return writers[path.suffix](self.records(**filters), path)


def _filters(prefix: str = "", **values: Any) -> tuple[list[str], list[Any]]:
    where, args = [], []
    for name, value in values.items():
        if value is not None:
            where.append(f"{prefix}{name} = ?")
            args.append(value)
    return where, args


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in metrics.items()}


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
        raise ValueError("Parquet export needs pyarrow: pip install pyarrow  (or: pip install 'dictlab[parquet]'); "
                         "CSV export (.csv) needs nothing extra") from None
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

"""What a run is and what it produces — pure data, no torch: the results store imports only this module.

A ``RunSpec`` names a task, its data (a generator's table), its seed and its parameters; the sha256 of its
canonical JSON is the run's id. A run produces ``Record``s (a label, metrics, a step); a ``RunOutcome`` is
what crosses back from wherever the run executed.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NamedTuple

from pydantic import Field, field_validator

from dictlab.config import Config

# Keys of package_versions(): what produced a stored number.
VERSIONED_PACKAGES: tuple[str, ...] = ("torch", "numpy", "dictlab")


class Record(NamedTuple):
    """One measurement of a run: ``label`` says what was measured (``"sae_topk"``, ``"fista+sae_topk"``),
    ``metrics`` the numbers, ``step`` the x of a curve (iteration, training step) or None."""

    label: str
    metrics: dict[str, float]
    step: float | None = None


def json_value(value: Any, what: str) -> Any:
    """``value`` as plain JSON (str, int, float, bool, None, lists, objects); ValueError naming the first entry
    that is anything else — NaN and infinities included, which strict JSON has no words for."""
    bad = _first_non_json(value, what)
    if bad is not None:
        raise ValueError(bad)
    return json.loads(json.dumps(value, allow_nan=False))


def _first_non_json(value: Any, path: str) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path}={value}: not a finite number (JSON has no NaN or infinity)"
    if value is None or isinstance(value, (str, bool, int, float)):
        return None
    if isinstance(value, (list, tuple)):
        return next((m for i, item in enumerate(value) if (m := _first_non_json(item, f"{path}[{i}]"))), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: key {key!r} is not a string"
            found = _first_non_json(item, f"{path}.{key}")
            if found:
                return found
        return None
    return f"{path}={value!r}: not a JSON value (str, int, float, bool, list, table)"


class RunSpec(Config):
    """Everything that determines one run; ``run_id`` (the hash of ``canonical_json()``) is its id in the store.

    ``data`` is a generator's table, normalised on construction to the canonical form (``{"generator": name,
    **every field}``, derived fields explicit — ``dictlab.data.data_spec``), so ``{"num_latents": 30}`` and
    ``{"generator": "compositional", "num_latents": 30, "k": 10}`` are the same run and a bad field fails here.
    ``params`` are the task's parameters; by convention ``params["method"]`` names the method the run is
    about (fitted and scored, or operated on by a surgery).
    """

    experiment: str = Field(..., min_length=1, description="Name of the experiment (spec) this run belongs to.")
    task: str = Field(..., min_length=1, description="Name of the task in TASKS.")
    data: dict[str, Any] = Field(default_factory=dict, description="The data: a generator name and its fields.")
    seed: int = Field(..., ge=0, description="Seed of the data and of every random choice of the task.")
    params: dict[str, Any] = Field(default_factory=dict, description="Task parameters (JSON values).")

    @field_validator("data")
    @classmethod
    def _canonical_data(cls, data: dict[str, Any]) -> dict[str, Any]:
        from dictlab.data import data_spec  # the generators (and torch) load on the first run built, not on import

        return data_spec(json_value(data, "data"))

    @field_validator("params")
    @classmethod
    def _json_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        return json_value(params, "params")

    @property
    def method(self) -> str | None:
        """The method this run is about (``params["method"]``), None for a task without one."""
        method = self.params.get("method")
        return method if isinstance(method, str) else None

    @property
    def generator(self) -> str:
        return str(self.data["generator"])

    def canonical_json(self) -> str:
        """Sorted-keys, whitespace-free JSON of the whole spec: the same spec gives the same text in any process."""
        return canonical_json(self.model_dump(mode="json"))

    def data_json(self) -> str:
        """Canonical JSON of the data alone: runs with equal ``data_json()`` and seed see the same dataset."""
        return canonical_json(self.data)

    @property
    def run_id(self) -> str:
        return run_id_of(self.model_dump(mode="json"))

    def config_hash(self) -> str:
        """The run id (first 16 hex digits of the sha256 of ``canonical_json()``)."""
        return self.run_id

    def describe(self) -> str:
        """A short human name of the run for messages: ``experiment/task seed=… params…``."""
        return f"{self.experiment}/{self.task} seed={self.seed} params={json.dumps(self.params, sort_keys=True)}"


def canonical_json(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)


def run_id_of(spec: dict[str, Any]) -> str:
    """First 16 hex digits of the sha256 of a spec's canonical JSON (``RunSpec.run_id`` of that spec)."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:16]


@dataclass
class RunOutcome:
    """What crosses back from a worker: records, per-phase timings and versions — or the error's traceback.
    ``artifacts`` maps relative file paths to their bytes, so the driver alone writes the run folder."""

    run_id: str
    records: list[Record] | None
    timings: dict[str, float]
    versions: dict[str, str]
    error: str | None = None
    artifacts: dict[str, bytes] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def finite_or_none(metrics: dict[str, float]) -> dict[str, float | None]:
    """Metrics for strict JSON: NaN and infinities become None (``null``)."""
    return {str(k): (float(v) if math.isfinite(v) else None) for k, v in metrics.items()}


def last_line(text: str | None, empty: str = "unknown error") -> str:
    """The last line of an error's traceback text (what it says went wrong), ``empty`` when there is none."""
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else empty


def package_versions(names: Iterable[str] = VERSIONED_PACKAGES) -> dict[str, str]:
    """Versions of Python and of the packages ``names`` (by default those that shape dictlab's numbers), read
    from metadata; nothing is imported; "unknown" for one not installed."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def checked_record(record: Any) -> Record:
    """``record`` as a ``Record`` with float metrics; ValueError naming what a task returned wrongly.
    A metric may be NaN (undefined on that split); the store keeps it as JSON ``null``."""
    if not isinstance(record, tuple) or len(record) not in (2, 3):
        raise ValueError(f"a task must return Record(label, metrics, step) tuples, got {record!r}")
    label, metrics, *rest = record
    step = rest[0] if rest else None
    if not isinstance(label, str) or not label:
        raise ValueError(f"record label must be a non-empty string, got {label!r}")
    if not isinstance(metrics, dict) or not all(isinstance(k, str) for k in metrics):
        raise ValueError(f"record {label!r}: metrics must be a dict of str -> number, got {type(metrics).__name__}")
    try:
        values = {key: float(value) for key, value in metrics.items()}
    except (TypeError, ValueError) as err:
        raise ValueError(f"record {label!r}: every metric must be a number: {err}") from None
    return Record(label, values, None if step is None else float(step))

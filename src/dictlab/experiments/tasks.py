"""Runs and the tasks that compute them: a ``RunSpec`` names a task, its data and its parameters; a task turns
the run's dataset into ``Record``s. Runs are the unit the store keeps and the executors distribute.

A task is a function ``task(data, spec, context) -> list[Record]`` registered in ``TASKS``. Data are generated
from ``spec.data`` and ``spec.seed`` wherever the run executes (cheap), so only the small spec travels to a
worker and only the records travel back. Task modules outside this file (``dictlab.surgery``) register on
import; ``load_task_modules()`` imports them before any lookup.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from pydantic import Field, ValidationError, field_validator

from dictlab.config import Config
from dictlab.data import CompositionalConfig, CompositionalDataset, make_compositional, random_unit_dictionary
from dictlab.models import DictionaryModel
from dictlab.models.io import save_model
from dictlab.registry import Registry
from dictlab.config import describe_validation_error

# Packages whose import registers more tasks (the surgeries); missing ones are skipped.
TASK_MODULES: tuple[str, ...] = ("dictlab.surgery",)
# Keys of package_versions(): what produced a stored number.
VERSIONED_PACKAGES: tuple[str, ...] = ("torch", "numpy", "dictlab")


class Record(NamedTuple):
    """One measurement of a run: ``label`` says what was measured (``"sae_topk"``, ``"fista+sae_topk"``),
    ``metrics`` the numbers, ``step`` the x of a curve (iteration, training step) or None."""

    label: str
    metrics: dict[str, float]
    step: float | None = None


class RunSpec(Config):
    """Everything that determines one run; its canonical JSON hash is the run's id in the store.

    ``data`` holds ``CompositionalConfig`` fields and is normalised to the full config (every field explicit),
    so ``{"num_latents": 30}`` and ``{"num_latents": 30, "k": 10}`` are the same run and a bad field fails here.
    """

    experiment: str = Field(..., min_length=1, description="Name of the experiment (spec) this run belongs to.")
    task: str = Field(..., min_length=1, description="Name of the task in TASKS.")
    data: dict[str, Any] = Field(default_factory=dict, description="CompositionalConfig fields of the run's data.")
    seed: int = Field(..., ge=0, description="Seed of the data and of every random choice of the task.")
    params: dict[str, Any] = Field(default_factory=dict, description="Task parameters (JSON values).")

    @field_validator("data")
    @classmethod
    def _full_data_config(cls, data: dict[str, Any]) -> dict[str, Any]:
        return CompositionalConfig(**data).model_dump(mode="json")

    @field_validator("params")
    @classmethod
    def _json_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return json.loads(json.dumps(params, allow_nan=False))
        except (TypeError, ValueError) as err:
            raise ValueError(f"params must hold finite JSON values (str, int, float, bool, list, dict): {err}") from None

    def canonical_json(self) -> str:
        """Sorted-keys, whitespace-free JSON of the whole spec: the same spec gives the same text in any process."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), allow_nan=False)

    def config_hash(self) -> str:
        """First 16 hex digits of the sha256 of ``canonical_json()``: the run id."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def describe(self) -> str:
        """A short human name of the run for messages: ``experiment/task seed=… params…``."""
        return f"{self.experiment}/{self.task} seed={self.seed} params={json.dumps(self.params, sort_keys=True)}"


@dataclass
class TaskContext:
    """What a task gets besides data and spec.

    seed : seed of every random choice.
    artifacts_dir : this run's own folder for learned models (None: do not save); use ``save_model``.
    progress : show progress bars.
    timings : per-phase seconds the task may add (``fit_s`` …); stored with the run's timings.
    """

    seed: int
    artifacts_dir: Path | None = None
    progress: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    def save_model(self, label: str, model: DictionaryModel) -> Path | None:
        """Save ``model`` (safetensors + JSON) under ``artifacts_dir/label`` when artifacts are asked for."""
        if self.artifacts_dir is None:
            return None
        parts = label.split("/")
        if not label or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"artifact label {label!r} must be a relative name like 'sae_topk' or 'warm_dl/sae_topk'")
        return save_model(model, self.artifacts_dir.joinpath(*parts))


TaskFn = Callable[[CompositionalDataset, RunSpec, TaskContext], list[Record]]
TASKS: Registry[TaskFn] = Registry("task")
# Optional cheap checks of a spec's params, run for every spec before a sweep starts (bad specs stop early).
TASK_CHECKS: Registry[Callable[[RunSpec], None]] = Registry("task check")


def load_task_modules() -> None:
    """Import the packages that register tasks (``dictlab.surgery``), skipping those not present."""
    for name in TASK_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def get_task(name: str) -> TaskFn:
    load_task_modules()
    if name not in TASKS:
        missing = [m for m in TASK_MODULES if importlib.util.find_spec(m) is None]
        note = f" (not installed: {', '.join(missing)})" if missing else ""
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(TASKS.names())}{note}")
    return TASKS[name]


def check_spec(spec: RunSpec) -> None:
    """Raise ValueError naming the run if its task is unknown or its params are invalid; runs nothing heavy."""
    get_task(spec.task)
    if spec.task in TASK_CHECKS:
        try:
            TASK_CHECKS[spec.task](spec)
        except ValueError as err:
            raise ValueError(f"run {spec.describe()}: {err}") from None


# --- executing one run (in whichever process the executor chose) ---------------------------------------


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


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that shape the numbers (read from metadata; nothing is imported)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def make_run_data(spec: RunSpec) -> CompositionalDataset:
    return make_compositional(CompositionalConfig(**spec.data), seed=spec.seed)


def execute_run(spec: RunSpec, *, artifacts: bool = False, progress: bool = False) -> RunOutcome:
    """Generate the run's data, run its task, time it. A task's exception is caught and returned as its
    traceback text (only interrupts propagate), so one bad run never stops a sweep."""
    run_id = spec.config_hash()
    versions = package_versions()
    timings: dict[str, float] = {}
    workdir = Path(tempfile.mkdtemp(prefix=f"dictlab-run-{run_id}-")) if artifacts else None
    try:
        start = time.perf_counter()
        task = get_task(spec.task)
        data = make_run_data(spec)
        generated = time.perf_counter()
        torch.manual_seed(spec.seed)  # for library code that draws from the global generator
        context = TaskContext(seed=spec.seed, artifacts_dir=workdir, progress=progress)
        records = [_checked_record(r) for r in task(data, spec, context)]
        done = time.perf_counter()
        timings = {**context.timings, "data_s": generated - start, "task_s": done - generated, "total_s": done - start}
        files = _read_tree(workdir) if workdir is not None else {}
        return RunOutcome(run_id, records, timings, versions, artifacts=files)
    except Exception:  # noqa: BLE001 - a failed run is data: its traceback is stored
        return RunOutcome(run_id, None, timings, versions, error=traceback.format_exc())
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _checked_record(record: Any) -> Record:
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


def _read_tree(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


# --- the "method" task: one method of dictlab.methods, fitted and scored --------------------------------


class MethodTaskParams(Config):
    """Params of task ``"method"``."""

    method: str = Field(..., description="Name in dictlab.methods.METHODS.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Hyperparameters over the recipe's defaults.")
    recipe: Literal["dictlab", "study"] = Field("dictlab", description="Defaults: dictlab's tuned or the study's.")
    study_metrics: bool = Field(False, description="Also compute the study's own MCC definitions.")


def _method_params(spec: RunSpec) -> MethodTaskParams:
    try:
        return MethodTaskParams(**spec.params)
    except ValidationError as err:
        detail = describe_validation_error(err, prefix="params.", allowed=MethodTaskParams.model_fields, noun="parameter")
        raise ValueError(detail) from None


@TASKS.register("method")
def method_task(data: CompositionalDataset, spec: RunSpec, context: TaskContext) -> list[Record]:
    """Fit one method on the train split and score it: one Record(label=method, metrics ∪ phase timings)."""
    from dictlab.experiments.single_run import run_method

    params = _method_params(spec)
    result = run_method(
        params.method,
        data,
        seed=context.seed,
        overrides=params.overrides,
        recipe=params.recipe,
        study_metrics=params.study_metrics,
        progress=context.progress,
    )
    context.timings.update(result.timings)
    if result.model is not None:
        context.save_model(params.method, result.model)
    return [Record(params.method, {**result.metrics, **result.timings})]


@TASK_CHECKS.register("method")
def check_method_spec(spec: RunSpec) -> None:
    """Build (not fit) the method for the spec's data sizes: unknown methods and bad hyperparameters fail here."""
    from dictlab.methods import METHODS, Problem, build_method

    params = _method_params(spec)
    METHODS[params.method]
    config = CompositionalConfig(**spec.data)
    p, m = config.num_latents, config.resolved_input_dim
    dictionary = random_unit_dictionary(p, m, torch.Generator().manual_seed(0))
    build_method(params.method, Problem(p, config.k, m, dictionary), params.overrides, params.recipe)

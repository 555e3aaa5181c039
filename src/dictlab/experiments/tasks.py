"""Tasks — what a run computes — and their execution in whichever process the executor chose.

A task is registered under a name with ``register_task``: a function ``run(data, spec, context) ->
list[Record]`` and a cheap ``check(spec)`` that validates the spec's params before any run starts and returns
the keys of the fits the run would make through a ``FitCache`` (so the runner can put runs that share a fit
in one batch: ``dl_lista`` trains on the very DL-FISTA fit ``dl_fista`` makes). Task modules register on
import; they form the entry-point group ``dictlab.tasks`` (the ``method`` task, the surgeries), loaded on the
first lookup. Data are generated from ``spec.data`` and ``spec.seed`` where the runs execute — once per batch —
so only specs travel to a worker and only outcomes travel back.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dictlab.data import GroundTruthDataset, make_dataset
from dictlab.experiments.runs import Record, RunOutcome, RunSpec, checked_record, package_versions
from dictlab.models import DictionaryModel, FitCache
from dictlab.models.io import save_model
from dictlab.registry import Registry


@dataclass
class TaskContext:
    """What a task gets besides data and spec.

    seed : seed of every random choice.
    artifacts_dir : this run's own folder for learned models (None: do not save); use ``save_model``.
    progress : show progress bars inside the run.
    timings : per-phase seconds the task may add (``fit_s`` …); stored with the run's timings.
    cache : fits shared with the other runs of the batch on the same data and seed (``FitCache``).
    """

    seed: int
    artifacts_dir: Path | None = None
    progress: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    cache: FitCache | None = None

    def save_model(self, label: str, model: DictionaryModel) -> Path | None:
        """Save ``model`` (safetensors + JSON) under ``artifacts_dir/label`` when artifacts are asked for."""
        if self.artifacts_dir is None:
            return None
        parts = label.split("/")
        if not label or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"artifact label {label!r} must be a relative name like 'sae_topk' or 'warm_dl/sae_topk'")
        return save_model(model, self.artifacts_dir.joinpath(*parts))


RunFn = Callable[[GroundTruthDataset, RunSpec, TaskContext], list[Record]]
CheckFn = Callable[[RunSpec], frozenset[str]]


def no_check(spec: RunSpec) -> frozenset[str]:
    return frozenset()


@dataclass(frozen=True)
class Task:
    """A registered task: ``run`` computes the records; ``check`` validates a spec cheaply (ValueError naming
    the problem) and returns the keys of the fits the run shares through its ``FitCache``."""

    name: str
    run: RunFn
    check: CheckFn = no_check


TASKS: Registry[Task] = Registry("task", plugins="dictlab.tasks")


def register_task(name: str, *, check: CheckFn = no_check) -> Callable[[RunFn], RunFn]:
    """Register ``run(data, spec, context)`` as task ``name`` with its ``check``."""

    def decorator(run: RunFn) -> RunFn:
        TASKS.register(name)(Task(name, run, check))
        return run

    return decorator


def check_spec(spec: RunSpec) -> frozenset[str]:
    """Validate ``spec`` (its task exists, its params are valid for its data); the fit keys it shares.
    Raises ValueError naming the run; runs nothing heavy."""
    task = TASKS[spec.task]
    try:
        return task.check(spec)
    except ValueError as err:
        raise ValueError(f"run {spec.describe()}: {err}") from None


# --- executing runs (in whichever process the executor chose) --------------------------------------------


def execute_runs(
    specs: Sequence[RunSpec],
    *,
    artifacts: bool = False,
    progress: bool = False,
    device: str = "cpu",
    on_start: Callable[[RunSpec], None] | None = None,
) -> Iterator[RunOutcome]:
    """Run ``specs`` one after another, yielding each outcome as it finishes.

    The data of each (data, seed) are generated once and shared, with one ``FitCache``, by the specs that use
    them. A task's exception is caught and returned as its traceback text (only interrupts propagate), so one
    bad run never stops the others. ``on_start(spec)`` is called just before each run.
    """
    shared: dict[tuple[str, int], tuple[GroundTruthDataset, FitCache]] = {}
    for spec in specs:
        if on_start is not None:
            on_start(spec)
        yield _execute(spec, shared, artifacts=artifacts, progress=progress, device=device)


def _execute(
    spec: RunSpec,
    shared: dict[tuple[str, int], tuple[GroundTruthDataset, FitCache]],
    *,
    artifacts: bool,
    progress: bool,
    device: str,
) -> RunOutcome:
    run_id, versions = spec.run_id, package_versions()
    timings: dict[str, float] = {}
    workdir = Path(tempfile.mkdtemp(prefix=f"dictlab-run-{run_id}-")) if artifacts else None
    try:
        start = time.perf_counter()
        task = TASKS[spec.task]
        key = (spec.data_json(), spec.seed)
        if key not in shared:
            shared[key] = (make_dataset(spec.data, seed=spec.seed, device=device), FitCache())
        data, cache = shared[key]
        generated = time.perf_counter()
        torch.manual_seed(spec.seed)  # for library code that draws from the global generator
        context = TaskContext(seed=spec.seed, artifacts_dir=workdir, progress=progress, cache=cache)
        records = [checked_record(r) for r in task.run(data, spec, context)]
        done = time.perf_counter()
        timings = {**context.timings, "data_s": generated - start, "task_s": done - generated, "total_s": done - start}
        files = _read_tree(workdir) if workdir is not None else {}
        return RunOutcome(run_id, records, timings, versions, artifacts=files)
    except Exception:  # a failed run is data: its traceback is stored
        return RunOutcome(run_id, None, timings, versions, error=traceback.format_exc())
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def execute_run(spec: RunSpec, *, artifacts: bool = False, progress: bool = False, device: str = "cpu") -> RunOutcome:
    """One run by itself (``execute_runs`` of a single spec)."""
    return next(execute_runs([spec], artifacts=artifacts, progress=progress, device=device))


def _read_tree(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}

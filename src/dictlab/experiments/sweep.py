"""The sweep runner: runs every spec not yet done, storing each the moment it finishes.

``run_sweep(specs, store)`` checks all specs first (a bad one stops the sweep before any run), skips runs the
store has as ``done``, re-runs ``running`` (cut off) and ``failed`` ones, and writes each outcome in the
driver process. A crash in one run is stored as ``failed`` with its traceback and the sweep goes on; Ctrl-C
raises ``SweepInterrupted`` after keeping every finished run (the ones in flight stay ``running``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from dictlab.experiments.executors import make_executor
from dictlab.experiments.store import ResultStore
from dictlab.experiments.tasks import RunOutcome, RunSpec, check_spec


@dataclass(frozen=True)
class SweepSummary:
    """total: distinct runs asked for; skipped_done: already done before; ran: done now; failed: failed now."""

    total: int
    skipped_done: int
    ran: int
    failed: int

    @property
    def not_run(self) -> int:
        """Runs neither done before nor finished now (interrupted, or left after a fail-fast stop)."""
        return self.total - self.skipped_done - self.ran - self.failed


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; ``summary`` says what was stored. Running the sweep again resumes it."""

    def __init__(self, summary: SweepSummary) -> None:
        super().__init__(f"sweep interrupted: {summary}")
        self.summary = summary


class RunFailed(RuntimeError):
    """A run failed with ``fail_fast=True``; it is stored as ``failed`` with its traceback."""

    def __init__(self, spec: RunSpec, error: str, summary: SweepSummary) -> None:
        last = error.strip().splitlines()[-1] if error.strip() else "unknown error"
        super().__init__(f"run {spec.config_hash()} ({spec.describe()}) failed: {last}")
        self.spec, self.error, self.summary = spec, error, summary


def check_specs(specs: Iterable[RunSpec]) -> list[RunSpec]:
    """Distinct specs (by run id, first seen kept), each checked: unknown task or bad params raise ValueError
    naming the run. Checks are shared by specs that differ only in seed or experiment."""
    unique: dict[str, RunSpec] = {}
    for spec in specs:
        if not isinstance(spec, RunSpec):
            raise ValueError(f"a sweep takes RunSpec objects, got {type(spec).__name__}")
        unique.setdefault(spec.config_hash(), spec)
    checked: set[str] = set()
    for spec in unique.values():
        key = spec.model_copy(update={"seed": 0, "experiment": "-"}).canonical_json()
        if key not in checked:
            check_spec(spec)
            checked.add(key)
    return list(unique.values())


def run_sweep(
    specs: Iterable[RunSpec],
    store: ResultStore,
    *,
    jobs: int | None = None,
    executor: str | None = None,
    address: str | None = None,
    threads: int | None = None,
    artifacts: bool = False,
    progress: bool = True,
    fail_fast: bool = False,
) -> SweepSummary:
    """Run every spec the store does not have as ``done``.

    jobs : runs at once (local: 1; process: default one per core; ray: default the cluster's CPUs).
    executor : ``"local"`` | ``"process"`` | ``"ray"``; None picks local for one job, process for more,
        ray when an ``address`` is given.
    address : Ray cluster address (``"auto"``, ``"ray://host:10001"``); None starts a local cluster.
    threads : torch threads per run (local: None keeps torch's setting; process and ray: default 1). On a
        small shared machine 1 is much faster than torch's default of one thread per core.
    artifacts : keep each run's learned models under ``store.artifacts_dir / run_id``.
    progress : a bar of runs done / total with ETA.
    fail_fast : stop at the first failed run and raise ``RunFailed``.
    """
    unique = check_specs(specs)
    runner = make_executor(executor, jobs, address, threads)
    todo = store.pending(unique)
    skipped = len(unique) - len(todo)
    ran = failed = 0

    def summary() -> SweepSummary:
        return SweepSummary(len(unique), skipped, ran, failed)

    bar = tqdm(total=len(unique), initial=skipped, unit="run", desc="sweep", disable=not progress, dynamic_ncols=True)
    outcomes = runner.run(todo, store.mark_running, artifacts)
    try:
        for spec, outcome in outcomes:
            if outcome.ok:
                if artifacts:
                    _write_artifacts(store.artifacts_dir / outcome.run_id, outcome)
                store.finish(spec, outcome.records or [], outcome.timings, outcome.versions)
                ran += 1
            else:
                store.fail(spec, outcome.error or "", outcome.timings, outcome.versions)
                failed += 1
                if progress:
                    bar.write(f"run {outcome.run_id} failed ({spec.describe()}): {_last_line(outcome.error)}")
                if fail_fast:
                    raise RunFailed(spec, outcome.error or "", summary())
            bar.update(1)
            if failed:
                bar.set_postfix(failed=failed)
    except KeyboardInterrupt:
        raise SweepInterrupted(summary()) from None
    finally:
        outcomes.close()  # cancels runs still in flight; they stay `running` in the store
        bar.close()
    return summary()


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else "unknown error"


def _write_artifacts(folder: Path, outcome: RunOutcome) -> None:
    """Replace the run's artifact folder with the outcome's files, swapping in a complete copy."""
    if not outcome.artifacts:
        return
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for relative, content in outcome.artifacts.items():
        target = partial / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)

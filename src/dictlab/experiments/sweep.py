"""The one runner: runs every spec not yet done, storing each the moment it finishes.

``run_sweep(specs, store)`` checks all specs first (a bad one stops the sweep before any run), skips runs the
store has as ``done``, re-runs ``running`` (cut off) and ``failed`` ones, and writes each outcome in the
driver process. Runs that share a fit (the same data and seed, overlapping fit keys: ``dl_lista`` trains on
the DL-FISTA fit ``dl_fista`` makes) go to one worker as a batch and share a ``FitCache``, so nothing is
fitted twice. A crash in one run is stored as ``failed`` with its traceback and the sweep goes on; Ctrl-C
(or SIGTERM, which the CLI turns into the same) raises ``SweepInterrupted`` after keeping every finished
run (the ones in flight stay ``running``). ``dictlab run`` and ``dictlab sweep`` both run through here.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from dictlab.experiments.executors import make_executor
from dictlab.experiments.runs import RunOutcome, RunSpec, last_line
from dictlab.experiments.store import ResultStore
from dictlab.experiments.tasks import check_spec

OnOutcome = Callable[[RunSpec, RunOutcome], None]


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
        super().__init__(f"run {spec.config_hash()} ({spec.describe()}) failed: {last_line(error)}")
        self.spec, self.error, self.summary = spec, error, summary


def check_specs(specs: Iterable[RunSpec]) -> list[RunSpec]:
    """Distinct specs (by run id, first seen kept), each checked: unknown task or bad params raise ValueError
    naming the run. Checks are shared by specs that differ only in seed or experiment."""
    return _checked(specs)[0]


def _checked(specs: Iterable[RunSpec]) -> tuple[list[RunSpec], dict[str, frozenset[str]]]:
    """Distinct specs, and by run id the fit keys their task's check returned."""
    unique: dict[str, RunSpec] = {}
    for spec in specs:
        if not isinstance(spec, RunSpec):
            raise ValueError(f"a sweep takes RunSpec objects, got {type(spec).__name__}")
        unique.setdefault(spec.run_id, spec)
    by_params: dict[str, frozenset[str]] = {}
    keys: dict[str, frozenset[str]] = {}
    for run_id, spec in unique.items():
        shared = spec.model_copy(update={"seed": 0, "experiment": "-"}).canonical_json()
        if shared not in by_params:
            by_params[shared] = check_spec(spec)
        keys[run_id] = by_params[shared]
    return list(unique.values()), keys


def plan_batches(specs: Iterable[RunSpec], fit_keys: dict[str, frozenset[str]] | None = None) -> list[list[RunSpec]]:
    """``specs`` partitioned into batches that run in one process with one ``FitCache``: runs of the same data
    and seed whose fit keys (by run id; default: their tasks' checks) overlap, transitively, form one batch;
    every other run is a batch of its own. Batches are ordered by their first run, runs within one keep
    their order."""
    ordered = list(specs)
    keys = fit_keys if fit_keys is not None else _checked(ordered)[1]
    position = {spec.run_id: i for i, spec in enumerate(ordered)}
    groups: list[tuple[tuple[str, int], set[str], list[RunSpec]]] = []
    for spec in ordered:
        where, mine, members = (spec.data_json(), spec.seed), set(keys.get(spec.run_id, ())), [spec]
        if mine:
            for group in [g for g in groups if g[0] == where and g[1] & mine]:  # every group it links, merged
                groups.remove(group)
                mine |= group[1]
                members = group[2] + members
        groups.append((where, mine, members))
    batches = [sorted(members, key=lambda s: position[s.run_id]) for _, _, members in groups]
    return sorted(batches, key=lambda batch: position[batch[0].run_id])


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
    run_progress: bool = False,
    device: str = "cpu",
    on_outcome: OnOutcome | None = None,
    fail_fast: bool = False,
) -> SweepSummary:
    """Run every spec the store does not have as ``done``.

    jobs : batches at once (local: 1; process: default one per core; ray: default the cluster's CPUs); a batch
        is one run, or the runs that share a fit (``plan_batches``).
    executor : ``"local"`` | ``"process"`` | ``"ray"``; None picks local for one job, process for more,
        ray when an ``address`` is given.
    address : Ray cluster address (``"auto"``, ``"ray://host:10001"``); None starts a local cluster.
    threads : torch threads per run (local: None keeps torch's setting; process and ray: default 1). On a
        small shared machine 1 is much faster than torch's default of one thread per core.
    artifacts : keep each run's learned models under ``store.artifacts_dir / run_id``.
    progress : a bar of runs done / total with ETA.
    run_progress : progress bars inside each run (fits), where the run executes in this process.
    device : where the runs compute (``cpu``, ``cuda``, ``cuda:N``).
    on_outcome : called as ``on_outcome(spec, outcome)`` after each outcome is stored.
    fail_fast : stop at the first failed run and raise ``RunFailed``.
    """
    unique, fit_keys = _checked(specs)
    runner = make_executor(executor, jobs, address, threads)
    todo = store.pending(unique)
    skipped = len(unique) - len(todo)
    ran = failed = 0

    def summary() -> SweepSummary:
        return SweepSummary(len(unique), skipped, ran, failed)

    bar = tqdm(total=len(unique), initial=skipped, unit="run", desc="sweep", disable=not progress, dynamic_ncols=True)
    batches = plan_batches(todo, fit_keys)
    outcomes = runner.run(batches, store.mark_running, artifacts=artifacts, progress=run_progress, device=device)
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
                    bar.write(f"run {outcome.run_id} failed ({spec.describe()}): {last_line(outcome.error)}")
                if fail_fast:
                    raise RunFailed(spec, outcome.error or "", summary())
            if on_outcome is not None:
                on_outcome(spec, outcome)
            bar.update(1)
            if failed:
                bar.set_postfix(failed=failed)
    except KeyboardInterrupt:
        raise SweepInterrupted(summary()) from None
    finally:
        outcomes.close()  # cancels runs still in flight; they stay `running` in the store
        bar.close()
    return summary()


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

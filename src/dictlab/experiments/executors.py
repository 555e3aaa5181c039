"""Where runs execute: in this process, in a pool of local processes, or on a Ray cluster.

Every executor has one method, ``run(batches, on_start, *, artifacts, progress, device)``: a generator over
batches of runs (runs of one batch share data and fits, so they run in one process, in order) that calls
``on_start(spec)`` just before a run is handed to a worker and yields ``(spec, RunOutcome)`` as runs finish.
Only specs go out and only outcomes (records, timings, versions, artifact bytes) come back; workers generate
their data from the specs and never touch the store. Closing the generator (Ctrl-C, fail-fast) cancels the
runs in flight, which the store still shows as ``running``.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import signal
import traceback
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

from dictlab.experiments.runs import RunOutcome, RunSpec, package_versions
from dictlab.experiments.tasks import execute_runs
from dictlab.registry import Registry

OnStart = Callable[[RunSpec], None]
Batches = Sequence[Sequence[RunSpec]]


class Executor(Protocol):
    def run(
        self,
        batches: Batches,
        on_start: OnStart,
        *,
        artifacts: bool = False,
        progress: bool = False,
        device: str = "cpu",
    ) -> Generator[tuple[RunSpec, RunOutcome], None, None]: ...


def _failure(spec: RunSpec, message: str) -> RunOutcome:
    return RunOutcome(spec.run_id, None, {}, package_versions(), error=message)


_WORKER_DIED = (
    "a worker process died while this run was in flight (killed by the OS, e.g. out of memory, or crashed); "
    "the pool was restarted. Any run in flight at that moment may have caused it: run the sweep again to retry.\n"
)


def _check_threads(threads: int | None) -> int | None:
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads must be an integer >= 1 or None, got {threads!r}")
    return threads


def worker_setup(threads: int) -> None:
    """Worker set-up: few torch threads (processes that each use torch's default of one thread per core
    thrash a small machine), and Ctrl-C left to the driver, which cancels the runs itself."""
    import torch

    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def spawn_pool(jobs: int, threads: int) -> ProcessPoolExecutor:
    """``jobs`` spawned worker processes, each set up by ``worker_setup(threads)``."""
    return ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("spawn"), initializer=worker_setup, initargs=(threads,)
    )


def run_in_worker(spec_jsons: list[str], artifacts: bool, device: str) -> list[RunOutcome]:
    """Entry point in a worker process: a batch's specs arrive as JSON, their outcomes go back together."""
    specs = [RunSpec.model_validate_json(text) for text in spec_jsons]
    return list(execute_runs(specs, artifacts=artifacts, device=device))


def _hand_out(batch: Sequence[RunSpec], on_start: OnStart) -> list[str]:
    """Mark a batch's runs as started and serialise them for a worker (specs travel as JSON)."""
    for spec in batch:
        on_start(spec)
    return [spec.model_dump_json() for spec in batch]


def _outcomes(batch: Sequence[RunSpec], outcomes: list[RunOutcome]) -> Iterator[tuple[RunSpec, RunOutcome]]:
    by_id = {outcome.run_id: outcome for outcome in outcomes}
    for spec in batch:
        yield spec, by_id.get(spec.run_id) or _failure(spec, "the worker returned no outcome for this run\n")


class LocalExecutor:
    """Runs one after another in this process, with ``threads`` torch threads (None: torch's setting as is)."""

    def __init__(self, jobs: int | None = None, address: str | None = None, threads: int | None = None) -> None:
        if jobs not in (None, 1):
            raise ValueError(
                f"executor 'local' runs one run at a time, got jobs={jobs}; use executor 'process' for jobs > 1"
            )
        if address is not None:
            raise ValueError("address is only for executor 'ray'")
        self.threads = _check_threads(threads)

    def run(
        self,
        batches: Batches,
        on_start: OnStart,
        *,
        artifacts: bool = False,
        progress: bool = False,
        device: str = "cpu",
    ) -> Generator[tuple[RunSpec, RunOutcome], None, None]:
        import torch

        before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            for batch in batches:
                runs = execute_runs(batch, artifacts=artifacts, progress=progress, device=device, on_start=on_start)
                yield from zip(batch, runs, strict=True)
        finally:
            torch.set_num_threads(before)


class ProcessExecutor:
    """Runs in ``jobs`` spawned worker processes (default: one per usable core), ``threads`` torch threads
    each (default 1)."""

    def __init__(self, jobs: int | None = None, address: str | None = None, threads: int | None = None) -> None:
        if address is not None:
            raise ValueError("address is only for executor 'ray'")
        self.jobs = jobs if jobs is not None else usable_cores()
        if self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")
        self.threads = _check_threads(threads) or 1

    def _pool(self) -> ProcessPoolExecutor:
        return spawn_pool(self.jobs, self.threads)

    def run(
        self,
        batches: Batches,
        on_start: OnStart,
        *,
        artifacts: bool = False,
        progress: bool = False,
        device: str = "cpu",
    ) -> Generator[tuple[RunSpec, RunOutcome], None, None]:
        queue = list(reversed(batches))
        in_flight: dict[Future[list[RunOutcome]], Sequence[RunSpec]] = {}
        pool = self._pool()
        try:
            while queue or in_flight:
                # Exactly `jobs` batches in flight: a queued run is not marked running before a worker takes it.
                while queue and len(in_flight) < self.jobs:
                    batch = queue.pop()
                    in_flight[pool.submit(run_in_worker, _hand_out(batch, on_start), artifacts, device)] = batch
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                broken = False
                for future in finished:
                    batch = in_flight.pop(future)
                    try:
                        outcomes = future.result()
                    except BrokenProcessPool:
                        broken = True
                        outcomes = [_failure(spec, _WORKER_DIED + traceback.format_exc()) for spec in batch]
                    except Exception:  # e.g. an outcome that could not be sent back
                        outcomes = [_failure(spec, traceback.format_exc()) for spec in batch]
                    yield from _outcomes(batch, outcomes)
                if broken:
                    # A dead worker breaks the whole pool; batches not yet reported as broken go back to the queue.
                    queue.extend(reversed(list(in_flight.values())))
                    in_flight.clear()
                    terminate_pool(pool)
                    pool = self._pool()
        finally:
            terminate_pool(pool, busy=bool(in_flight))


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and taskset narrow), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def terminate_pool(pool: ProcessPoolExecutor, busy: bool = True) -> None:
    """Stop a pool; with runs still ``busy`` kill its workers now (shutdown alone would wait for them)."""
    if not busy:
        pool.shutdown(wait=True)
        return
    workers = list((getattr(pool, "_processes", None) or {}).values())  # private; the only handle before 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        if process.is_alive():
            process.terminate()
    for process in workers:
        process.join(timeout=5)


def _run_in_ray_worker(spec_jsons: list[str], artifacts: bool, device: str, threads: int) -> list[RunOutcome]:
    import torch

    torch.set_num_threads(threads)
    return run_in_worker(spec_jsons, artifacts, device)


class RayExecutor:
    """Runs as Ray tasks (one CPU each) on the cluster at ``address`` (None: a new local cluster, or the one
    this process is already connected to). ``jobs`` caps the runs in flight (default: the cluster's CPUs).
    Workers must have the same dictlab installed; the driver alone writes the store and artifacts.
    Each run reserves ``threads`` CPUs (default 1) and uses that many torch threads."""

    def __init__(self, jobs: int | None = None, address: str | None = None, threads: int | None = None) -> None:
        if jobs is not None and jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        if importlib.util.find_spec("ray") is None:
            raise ValueError("executor 'ray' needs Ray: pip install ray  (or: pip install 'dictlab[ray]')")
        self.jobs = jobs
        self.address = address
        self.threads = _check_threads(threads) or 1

    def run(
        self,
        batches: Batches,
        on_start: OnStart,
        *,
        artifacts: bool = False,
        progress: bool = False,
        device: str = "cpu",
    ) -> Generator[tuple[RunSpec, RunOutcome], None, None]:
        if not batches:
            return  # nothing to do: do not start or join a cluster
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(num_cpus=self.threads, max_retries=0)(_run_in_ray_worker)
        limit = self.jobs or max(1, int(ray.cluster_resources().get("CPU", 1)))
        queue = list(reversed(batches))
        in_flight: dict[object, Sequence[RunSpec]] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < limit:
                    batch = queue.pop()
                    in_flight[remote.remote(_hand_out(batch, on_start), artifacts, device, self.threads)] = batch
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    batch = in_flight.pop(ref)
                    try:
                        outcomes = ray.get(ref)
                    except Exception:  # worker crash, lost node: the runs failed, the sweep goes on
                        outcomes = [_failure(spec, traceback.format_exc()) for spec in batch]
                    yield from _outcomes(batch, outcomes)
        finally:
            for ref in in_flight:
                ray.cancel(ref, force=True)
            if started_here:
                ray.shutdown()


# Factories called as factory(jobs, address, threads).
EXECUTORS: Registry[Callable[[int | None, str | None, int | None], Executor]] = Registry("executor")
EXECUTORS.register("local")(LocalExecutor)
EXECUTORS.register("process")(ProcessExecutor)
EXECUTORS.register("ray")(RayExecutor)


def make_executor(
    name: str | None, jobs: int | None = None, address: str | None = None, threads: int | None = None
) -> Executor:
    """Executor ``name`` (None: ``ray`` when an address is given, else ``local`` for one job, ``process`` for
    more) running ``jobs`` runs at once with ``threads`` torch threads each."""
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    if name is None:
        name = "ray" if address is not None else ("local" if jobs in (None, 1) else "process")
    return EXECUTORS[name](jobs, address, threads)

"""One method on one dataset: build, fit on the train split, encode every split, score. Timed by phase."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from dictlab.data import CompositionalConfig, CompositionalDataset, make_compositional
from dictlab.experiments.evaluate import encode_splits, score_codes
from dictlab.methods import METHODS, Problem, build_method
from dictlab.models import DictionaryModel, FitCache, FitContext


@dataclass
class RunResult:
    """What one (method, seed) run produced. ``model`` is kept in memory only, never serialised here."""

    method: str
    seed: int
    recipe: str
    overrides: dict[str, Any]
    metrics: dict[str, float]
    timings: dict[str, float]
    model: DictionaryModel | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("model")
        return out


def problem_of(data: CompositionalDataset) -> Problem:
    return Problem(data.num_latents, data.k, data.input_dim, data.dictionary)


def fit_method(
    name: str,
    data: CompositionalDataset,
    *,
    seed: int,
    overrides: dict[str, Any] | None = None,
    recipe: str = "dictlab",
    track_dynamics: bool = False,
    progress: bool = False,
    cache: FitCache | None = None,
) -> DictionaryModel:
    """Build method ``name`` and fit it on ``data.train``. ``track_dynamics`` lets the learner log its
    dictionary's match to the truth along training (ground truth is never used to fit). ``cache`` shares
    identical fits between the methods run on this ``data`` and seed (``FitCache``)."""
    model = build_method(name, problem_of(data), overrides, recipe)
    context = FitContext(
        seed=seed,
        ground_truth=data.dictionary if track_dynamics else None,
        codes=data.train.codes.to_dense() if METHODS[name].supervised else None,
        progress=progress,
        cache=cache,
    )
    return context.fit(model, data.train.y)


def run_method(
    name: str,
    data: CompositionalDataset,
    *,
    seed: int,
    overrides: dict[str, Any] | None = None,
    recipe: str = "dictlab",
    study_metrics: bool = False,
    progress: bool = False,
    cache: FitCache | None = None,
) -> RunResult:
    """Fit, encode and score one method; timings in seconds for each phase. With a ``cache`` shared by the
    methods run on the same ``data`` and seed, a fit already made (DL-FISTA's, inside ``dl_lista``) is reused
    and its time is counted once, in the method that made it."""
    start = time.perf_counter()
    model = fit_method(name, data, seed=seed, overrides=overrides, recipe=recipe, progress=progress, cache=cache)
    fitted = time.perf_counter()
    codes = encode_splits(model, data)
    encoded = time.perf_counter()
    metrics = score_codes(model, data, codes, seed=seed, study_metrics=study_metrics)
    scored = time.perf_counter()
    timings = {
        "fit_s": fitted - start,
        "encode_s": encoded - fitted,
        "score_s": scored - encoded,
        "total_s": scored - start,
    }
    return RunResult(name, seed, recipe, dict(overrides or {}), metrics, timings, model)


def fit_groups(methods: list[str], models: dict[str, DictionaryModel]) -> list[list[str]]:
    """``methods`` partitioned so that methods whose models share a fit (overlapping ``fit_keys``) are in one
    group; groups are ordered by their first method, methods within a group keep their order."""
    groups: list[tuple[set[str], list[str]]] = []  # (fit keys, method names)
    for name in methods:
        keys, names = set(models[name].fit_keys()), [name]
        for group in [g for g in groups if g[0] & keys]:  # every group this method links, merged into one
            groups.remove(group)
            keys |= group[0]
            names = group[1] + names
        groups.append((keys, names))
    position = {name: i for i, name in enumerate(methods)}
    ordered = [sorted(names, key=position.__getitem__) for _, names in groups]
    return sorted(ordered, key=lambda names: position[names[0]])


def iter_group(
    config: CompositionalConfig,
    seed: int,
    methods: list[str],
    *,
    overrides: dict[str, dict[str, Any]],
    recipe: str,
    study_metrics: bool,
    device: str,
) -> Iterator[RunResult]:
    """Methods run one after another on the data of (config, seed), sharing one ``FitCache``; each result is
    yielded as soon as it exists, without its model (memory stays flat across a sweep)."""
    data = make_compositional(config, seed=seed).to(device)
    cache = FitCache()
    for name in methods:
        torch.manual_seed(seed)  # for any library code that draws from the global generator
        result = run_method(
            name, data, seed=seed, overrides=overrides.get(name), recipe=recipe, study_metrics=study_metrics, cache=cache
        )
        result.model = None
        yield result


def run_group(config: CompositionalConfig, seed: int, methods: list[str], **settings: Any) -> list[RunResult]:
    """``iter_group`` as a list: the task a worker process runs for ``run_point(jobs > 1)``."""
    return list(iter_group(config, seed, methods, **settings))


def run_point(
    config: CompositionalConfig,
    methods: list[str],
    seeds: list[int],
    *,
    overrides: dict[str, dict[str, Any]] | None = None,
    recipe: str = "dictlab",
    study_metrics: bool = False,
    device: str = "cpu",
    on_result: Any = None,
    jobs: int = 1,
) -> list[RunResult]:
    """Every method on one data configuration for every seed (the seed is the data seed and the fit seed).

    Methods are validated before anything runs, so a typo fails in a second, not after an hour. The methods
    of one seed share a ``FitCache``: ``dl_lista`` reuses the DL-FISTA fit of ``dl_fista`` when both run.
    ``on_result(result)`` is called after each run (progress display, incremental saving).

    ``jobs > 1`` runs (seed, group of methods) tasks in that many spawned processes with one torch thread
    each; methods sharing a fit form one group (``fit_groups``), so nothing is fitted twice. Results come
    back in the same order as with ``jobs = 1``; a learner's float rounding, hence a chaotic one's result
    (DL-FISTA at p = 1000), can differ from a run with another thread count.
    """
    overrides = overrides or {}
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    for name in list(methods) + list(overrides):
        METHODS[name]  # unknown names raise here, listing the allowed ones
    if not seeds:
        return []
    problem = problem_of(make_compositional(config, seed=seeds[0]))
    models = {name: build_method(name, problem, overrides.get(name), recipe) for name in methods}  # validates
    settings: dict[str, Any] = {"overrides": overrides, "recipe": recipe, "study_metrics": study_metrics, "device": device}
    if jobs == 1:
        results = []
        for seed in seeds:
            for result in iter_group(config, seed, list(methods), **settings):
                results.append(result)
                if on_result is not None:
                    on_result(result)
        return results
    return _run_parallel(config, methods, seeds, fit_groups(list(methods), models), settings, on_result, jobs)


def _run_parallel(
    config: CompositionalConfig,
    methods: list[str],
    seeds: list[int],
    groups: list[list[str]],
    settings: dict[str, Any],
    on_result: Any,
    jobs: int,
) -> list[RunResult]:
    from concurrent.futures import as_completed

    from dictlab.experiments.executors import spawn_pool, terminate_pool

    tasks = [(seed, group) for seed in seeds for group in groups]
    finished: dict[tuple[int, str], RunResult] = {}
    pool = spawn_pool(min(jobs, len(tasks)), threads=1)
    try:
        futures = [pool.submit(run_group, config, seed, group, **settings) for seed, group in tasks]
        for future in as_completed(futures):
            for result in future.result():
                finished[(result.seed, result.method)] = result
                if on_result is not None:
                    on_result(result)
    except BaseException:
        terminate_pool(pool)  # Ctrl-C or a failed run: stop the workers now instead of waiting for them
        raise
    terminate_pool(pool, busy=False)
    return [finished[(seed, name)] for seed in seeds for name in methods]

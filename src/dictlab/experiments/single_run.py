"""One method on one dataset: build, fit on the train split, encode every split, score. Timed by phase."""

from __future__ import annotations

import time
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
) -> list[RunResult]:
    """Every method on one data configuration for every seed (the seed is the data seed and the fit seed).

    Methods are validated before anything runs, so a typo fails in a second, not after an hour. The methods
    of one seed share a ``FitCache``: ``dl_lista`` reuses the DL-FISTA fit of ``dl_fista`` when both run.
    ``on_result(result)`` is called after each run (progress display, incremental saving).
    """
    overrides = overrides or {}
    for name in list(methods) + list(overrides):
        METHODS[name]  # unknown names raise here, listing the allowed ones
    probe_data = make_compositional(config, seed=seeds[0]) if seeds else None
    if probe_data is not None:
        for name in methods:
            build_method(name, problem_of(probe_data), overrides.get(name), recipe)  # validates hyperparameters
    results = []
    for seed in seeds:
        data = probe_data if seed == seeds[0] and probe_data is not None else make_compositional(config, seed=seed)
        data = data.to(device)
        cache = FitCache()
        for name in methods:
            torch.manual_seed(seed)  # for any library code that draws from the global generator
            result = run_method(
                name, data, seed=seed, overrides=overrides.get(name), recipe=recipe, study_metrics=study_metrics, cache=cache
            )
            result.model = None  # keep memory flat across a sweep
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results

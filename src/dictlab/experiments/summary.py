"""Aggregate runs over seeds: mean and standard deviation of every metric and timing, per method."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from dictlab.experiments.single_run import RunResult


def summarise(results: list[RunResult]) -> dict[str, dict[str, dict[str, float]]]:
    """``{method: {metric: {"mean", "std", "n"}}}`` over seeds; timings appear as metrics ``fit_s`` etc.

    std is the sample standard deviation (n − 1); 0 for a single seed.
    """
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for result in results:
        for key, value in {**result.metrics, **result.timings}.items():
            values[result.method][key].append(float(value))
    return {method: {key: _stats(vals) for key, vals in per_metric.items()} for method, per_metric in values.items()}


def _stats(vals: list[float]) -> dict[str, Any]:
    n = len(vals)
    mean = sum(vals) / n
    var = sum((v - mean) ** 2 for v in vals) / (n - 1) if n > 1 else 0.0
    return {"mean": mean, "std": math.sqrt(var), "n": n}

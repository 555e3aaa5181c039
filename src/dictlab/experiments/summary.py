"""Mean ± std over seeds of the records of a point: what ``dictlab run`` prints and exports.

Pure functions of the flat record rows of ``ResultStore.records()`` (no torch); the report builds on the same
``stats``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

Row = dict[str, Any]
# Row keys that describe a record rather than measure something.
_METADATA = ("run_id", "experiment", "task", "method", "seed", "label", "step")
_PREFIXES = ("data.", "params.", "timing.")


@dataclass(frozen=True)
class Stats:
    """Mean and sample standard deviation (n − 1; 0 for one value) over ``n`` values."""

    mean: float
    std: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std, "n": self.n}


def is_number(value: Any) -> TypeGuard[int | float]:
    """True for finite int/float values (bools, None and NaN are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def stats(values: Iterable[Any]) -> Stats | None:
    """Mean ± sample std of the finite numbers among ``values``; None when there are none."""
    vals = [float(v) for v in values if is_number(v)]
    if not vals:
        return None
    n = len(vals)
    mean = math.fsum(vals) / n
    var = math.fsum((v - mean) ** 2 for v in vals) / (n - 1) if n > 1 else 0.0
    return Stats(mean, math.sqrt(var), n)


def metric_columns(rows: Sequence[Row]) -> list[str]:
    """Keys of ``rows`` that hold measurements (not metadata, data, params or run timings), first-seen order."""
    names = dict.fromkeys(key for row in rows for key in row if key not in _METADATA and not key.startswith(_PREFIXES))
    return [name for name in names if any(is_number(row.get(name)) for row in rows)]


def measurements(row: Row) -> dict[str, Any]:
    """The measurement columns of one row, undefined ones (``None``) included."""
    return {key: value for key, value in row.items() if key not in _METADATA and not key.startswith(_PREFIXES)}


def summarise(rows: Sequence[Row]) -> dict[str, dict[str, Stats]]:
    """``{label: {metric: Stats over the rows (seeds) of that label}}``, labels and metrics in first-seen order.
    An undefined metric (``None``) is left out of its mean; a metric no row defines is absent."""
    out: dict[str, dict[str, Stats]] = {}
    columns = metric_columns(rows)
    for label in dict.fromkeys(str(row["label"]) for row in rows):
        mine = [row for row in rows if row["label"] == label]
        per_metric = {name: stats(row.get(name) for row in mine) for name in columns}
        out[label] = {name: value for name, value in per_metric.items() if value is not None}
    return out

"""Store rows grouped and summarised for the report: the grid of an experiment and mean ± std over seeds.

Rows are the flat dicts of ``ResultStore.records()``: run metadata (``run_id, experiment, task, method, seed``),
``label``, ``step``, ``data.<field>``, ``params.<key>``, ``timing.<phase>`` and one column per metric.
Everything here is a pure function of rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from dictlab.experiments.summary import Row, Stats, is_number, metric_columns, stats

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

# Grid columns the sweep axis prefers, in order, when several vary equally often.
AXIS_PREFERENCE = ("data.num_latents", "data.n_samples", "data.k", "data.input_dim", "data.noise_std")
# Params that name what a run is about (they become the label or the subject), never a grid axis.
IDENTITY_PARAMS = ("params.method", "params.label")


def seed_stats(rows: Iterable[Row], metric: str) -> Stats | None:
    """Mean ± std of ``metric`` over seeds. Rows of one seed are averaged first: a reference such as the FISTA
    oracle is recomputed in every SAE's run of that seed and must count once per seed, not once per run."""
    per_seed: dict[Any, list[float]] = {}
    for row in rows:
        value = row.get(metric)
        if is_number(value):
            per_seed.setdefault(row.get("seed"), []).append(float(value))
    return stats(math.fsum(vals) / len(vals) for vals in per_seed.values())


def group_by(rows: Iterable[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    """Rows grouped by ``key(row)``, groups and rows in first-seen order."""
    out: dict[K, list[T]] = {}
    for row in rows:
        out.setdefault(key(row), []).append(row)
    return out


def _hashable(value: Any) -> Hashable:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def metric_names(rows: Sequence[Row]) -> list[str]:
    """Columns that hold measurements: not metadata, data, params or timings; first-seen order."""
    return metric_columns(rows)


def grid_columns(rows: Sequence[Row]) -> list[str]:
    """The experiment's grid: ``data.*``/``params.*`` columns whose value differs between runs of one label
    (a column that differs only between labels, like a method's own overrides, is not a grid axis)."""
    candidates = dict.fromkeys(
        key for row in rows for key in row if key.startswith(("data.", "params.")) and key not in IDENTITY_PARAMS
    )
    out = []
    for column in candidates:
        for group in group_by(rows, lambda r: r.get("label")).values():
            if len({_hashable(r.get(column)) for r in group}) > 1:
                out.append(column)
                break
    return sorted(out, key=lambda c: (AXIS_PREFERENCE.index(c) if c in AXIS_PREFERENCE else len(AXIS_PREFERENCE), c))


def fixed_settings(rows: Sequence[Row]) -> dict[str, Any]:
    """``data.*`` fields with one value over all rows (the experiment's constants), without the prefix."""
    out = {}
    for column in dict.fromkeys(key for row in rows for key in row if key.startswith("data.")):
        values = {_hashable(row.get(column)) for row in rows}
        if len(values) == 1:
            out[column.removeprefix("data.")] = rows[0].get(column)
    return out


def short_name(column: str) -> str:
    """``data.num_latents`` → ``num_latents``; ``params.overrides.lr`` → ``overrides.lr``."""
    return column.split(".", 1)[1] if column.startswith(("data.", "params.")) else column


def grid_point(row: Row, columns: Sequence[str]) -> tuple[Hashable, ...]:
    return tuple(_hashable(row.get(column)) for column in columns)


def describe_point(columns: Sequence[str], point: Sequence[Any]) -> str:
    """``num_latents=100, k=3``; empty for an experiment with a single grid point."""
    return ", ".join(f"{short_name(c)}={format_value(v)}" for c, v in zip(columns, point, strict=True))


def format_value(value: Any) -> str:
    if is_number(value) and float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    if is_number(value):
        return f"{value:g}"
    return str(value)


def sort_key(value: Any) -> tuple[int, Any]:
    """Numbers in numeric order first, then everything else by its text (None last)."""
    if is_number(value):
        return (0, float(value))
    return (1 if value is not None else 2, str(value))


@dataclass(frozen=True)
class SweepAxes:
    """x: the grid column drawn on the x axis (None: no numeric grid column); facets: the other grid columns
    that are not determined by x (one panel per combination of their values)."""

    x: str | None
    facets: tuple[str, ...]


def sweep_axes(rows: Sequence[Row], columns: Sequence[str]) -> SweepAxes:
    """The numeric grid column with the most distinct values is x (ties: ``AXIS_PREFERENCE`` order); a column
    that is a function of x (an input_dim from the compressed-sensing bound) is not a facet."""
    numeric = [c for c in columns if all(is_number(r.get(c)) for r in rows)]
    if not numeric:
        return SweepAxes(None, tuple(columns))
    counts = {c: len({r.get(c) for r in rows}) for c in numeric}
    x = max(numeric, key=lambda c: (counts[c], -columns.index(c)))
    facets = []
    for column in columns:
        if column == x:
            continue
        images: dict[Any, set[Hashable]] = {}
        for row in rows:
            images.setdefault(row.get(x), set()).add(_hashable(row.get(column)))
        if any(len(values) > 1 for values in images.values()):
            facets.append(column)
    return SweepAxes(x, tuple(facets))


def subjects_of(rows: Sequence[Row]) -> list[str]:
    """What a surgery operates on, first-seen order: the method of each run with a record labelled otherwise
    than the method itself (a surgery's arms: ``fista+sae_topk``, ``fista_oracle`` …), and the part after
    ``+`` in labels like ``fista+sae_topk``. Runs whose only label is their method or their variant's name (plain
    fits) have none."""
    found: dict[str, None] = {}
    for row in rows:
        method = row.get("params.method", row.get("method"))
        label = str(row.get("label", ""))
        if row.get("params.label") == label:  # a named variant of a method (sae_topk_fa): a plain fit too
            continue
        if isinstance(method, str) and label != method:
            found[method] = None
        if "+" in label:
            found[label.split("+", 1)[1]] = None
    return list(found)


OWN_ARM = "own encoder"


def split_label(label: str, subjects: Sequence[str]) -> tuple[str, str | None]:
    """``fista+sae_topk`` → (``fista``, ``sae_topk``); a subject's own label → (``own encoder``, subject);
    anything else (``fista_oracle``) → (label, None): a reference shared by every subject."""
    if "+" in label:
        arm, subject = label.split("+", 1)
        return arm, subject
    if label in subjects:
        return OWN_ARM, label
    return label, None

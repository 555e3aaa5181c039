"""Tables of the report as data: mean ± std per label and grid point, per-metric pivots of a sweep, run counts
and failed runs. ``html.py`` renders them; tests read the cells."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dictlab.report.aggregate import (
    Row,
    Stats,
    SweepAxes,
    describe_point,
    format_value,
    grid_point,
    group_by,
    is_number,
    seed_stats,
    short_name,
    sort_key,
)
from dictlab.report.layouts import metric_title
from dictlab.report.published import GT, MIP, PublishedSet

if TYPE_CHECKING:
    from dictlab.experiments.store import StoredRun

Cell = str | int | float | Stats | None


@dataclass(frozen=True)
class Table:
    """A titled table: header cells and body rows; a ``Stats`` cell renders as ``mean ± std``."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    note: str = ""


def _number_format(size: float) -> str:
    if size >= 1000:
        return ",.0f"
    if size >= 100:
        return ".1f"
    if size >= 1e-3 or size == 0:
        return ".3f"
    return ".2e"


def format_number(value: float) -> str:
    """Three decimals for scores, fewer for large counts, scientific for tiny values; 0 as ``0``."""
    return "0" if value == 0 else format(value, _number_format(abs(value)))


def format_cell(cell: Cell) -> str:
    if cell is None:
        return "–"
    if isinstance(cell, Stats):
        text = format_number(cell.mean)
        # the spread in the mean's format, so a column reads evenly (0.552 ± 0.000, not 0.552 ± 4.51e-05)
        spread = format(cell.std, _number_format(abs(cell.mean))) if cell.mean != 0 else format_number(cell.std)
        return text if cell.n < 2 else f"{text} ± {spread}"
    if is_number(cell):
        return format_value(cell)
    return str(cell)


def summary_table(
    rows: Sequence[Row], grid: Sequence[str], metrics: Sequence[str], key: str, at_step: str | float = "last"
) -> Table | None:
    """One row per grid point and label: mean ± std over seeds of each metric. A label recorded along steps
    (a curve) is summarised at step ``at_step`` if it has it, else at its last step (the ``step`` column)."""
    metrics = [m for m in metrics if any(is_number(r.get(m)) for r in rows)]
    if not metrics or not rows:
        return None
    curves = any(r.get("step") is not None for r in rows)
    body = []
    points = group_by(rows, lambda r: grid_point(r, grid))
    for point in sorted(points, key=lambda p: [sort_key(v) for v in p]):
        for label, label_rows in group_by(points[point], lambda r: r["label"]).items():
            steps = [r["step"] for r in label_rows if is_number(r.get("step"))]
            last = (at_step if at_step in steps else max(steps)) if steps else None
            chosen = [r for r in label_rows if r.get("step") == last] if last is not None else label_rows
            cells = [seed_stats(chosen, m) for m in metrics]
            seeds = len({r.get("seed") for r in chosen})
            body.append((*(format_value(v) for v in point), label, *((last,) if curves else ()), seeds, *cells))
    columns = (
        *(short_name(c) for c in grid),
        "label",
        *(("step",) if curves else ()),
        "seeds",
        *(metric_title(m) for m in metrics),
    )
    where = "their last step" if at_step == "last" else f"step {format_value(at_step)} (else their last step)"
    note = f"Curves are summarised at {where}." if curves else ""
    return Table(key, "Mean ± std over seeds per grid point and label", columns, tuple(body), note)


def pivot_table(rows: Sequence[Row], metric: str, axes: SweepAxes, key: str) -> Table | None:
    """A sweep's ``metric`` as label (and facet) × swept value, mean ± std over seeds: the study's tables."""
    rows = [r for r in rows if r.get("step") is None and is_number(r.get(metric))]
    if axes.x is None or not rows:
        return None
    x_column = axes.x
    xs = sorted({r.get(x_column) for r in rows}, key=sort_key)
    body = []
    facets = group_by(rows, lambda r: grid_point(r, axes.facets))
    for point in sorted(facets, key=lambda p: [sort_key(v) for v in p]):
        for label, label_rows in group_by(facets[point], lambda r: r["label"]).items():
            by_x = group_by(label_rows, lambda r: r.get(x_column))
            cells = [seed_stats(by_x[x], metric) if x in by_x else None for x in xs]
            body.append((*((describe_point(axes.facets, point),) if axes.facets else ()), label, *cells))
    columns = (*(("facet",) if axes.facets else ()), "label", *(f"{short_name(axes.x)}={format_value(x)}" for x in xs))
    return Table(key, f"{metric_title(metric)} ({metric})", columns, tuple(body))


# What the table sets beside each published number: the same definition first, then its variants.
MEASURED_BESIDE = {
    GT: ("gt_recovery_encoder_90", "gt_recovery_encoder_95", "gt_recovery_90"),
    MIP: ("mip_encoder", "mip"),
}


def published_table(rows: Sequence[Row], published: PublishedSet, key: str) -> Table | None:
    """A paper's numbers side by side with dictlab's measurement of the same label (and swept value): one row per
    published (label, x), for each published metric its value, then the measured mean ± std of the same metric
    and of its variants (``MEASURED_BESIDE``: the 0.95 threshold, the decoder side). Measured rows of labels the
    paper has no number for are left out; a published number without a measurement shows "–"."""
    rows = [r for r in rows if r.get("step") is None]
    x_field = published.x_field
    keyed = group_by(rows, lambda r: (r.get("label"), r.get(x_field) if x_field else None))
    entries = group_by(published.values, lambda v: (v.label, v.x))
    metrics = list(dict.fromkeys(v.metric for v in published.values))
    measured = {m: [c for c in MEASURED_BESIDE.get(m, (m,)) if any(is_number(r.get(c)) for r in rows)] for m in metrics}
    if not any(measured.values()):
        return None
    body: list[tuple[Cell, ...]] = []
    for (label, x), values in sorted(entries.items(), key=lambda item: (str(item[0][0]), sort_key(item[0][1]))):
        by_metric = {v.metric: v for v in values}
        match = _rows_at(keyed, label, x)
        cells: list[Cell] = []
        for metric in metrics:
            cells.append(by_metric[metric].value if metric in by_metric else None)
            cells.extend(seed_stats(match, column) if match else None for column in measured[metric])
        where = ", ".join(sorted({v.where for v in values}))
        body.append((label, *((format_value(x),) if x_field else ()), where, *cells))
    columns = (
        "label",
        *((short_name(x_field),) if x_field else ()),
        "table",
        *(name for m in metrics for name in (f"published {metric_title(m)}", *map(metric_title, measured[m]))),
    )
    note = (
        f"Published: {published.source} at its full scale; measured: this store's runs (their scale is in the "
        "fixed settings above). The paper defines its metrics on the encoder (W_E^T) with τ 'typically 0.9 or 0.95'."
    )
    return Table(key, f"Published ({published.source}) and measured", columns, tuple(body), note)


def _rows_at(keyed: dict[tuple[object, object], list[Row]], label: str, x: float | None) -> list[Row]:
    """The rows of ``label`` at swept value ``x``, matching floats by value (0.1 stored as 0.1000000001)."""
    for (row_label, row_x), group in keyed.items():
        if row_label != label:
            continue
        if x is None or (is_number(row_x) and abs(float(row_x) - x) <= 1e-9 * max(1.0, abs(x))):
            return group
    return []


def run_count_table(runs: Sequence[StoredRun] | None, rows: Sequence[Row], key: str) -> Table:
    """Runs per experiment and task by status. Without the store's runs (rows given directly) only the runs
    that have records are known: they are counted as done and failures are unknown."""
    body: list[tuple[Cell, ...]] = []
    if runs is None:
        for (experiment, task), group in group_by(rows, lambda r: (r.get("experiment"), r.get("task"))).items():
            body.append((experiment, task, len({r.get("run_id") for r in group}), None, None))
        note = "Built from rows, not from a store: failed and cut-off runs are not known."
    else:
        for (experiment, task), task_runs in group_by(runs, lambda r: (r.experiment, r.task)).items():
            count = {status: sum(r.status == status for r in task_runs) for status in ("done", "failed", "running")}
            body.append((experiment, task, count["done"], count["failed"], count["running"]))
        note = "running: started but never finished (cut off); a sweep re-runs these and failed runs."
    return Table(key, "Runs", ("experiment", "task", "done", "failed", "running"), tuple(body), note)


def failed_runs_table(runs: Sequence[StoredRun], key: str) -> Table | None:
    """Failed and cut-off runs with what identifies them and the last line of the error."""
    bad = [r for r in runs if r.status != "done"]
    if not bad:
        return None
    body = []
    for run in bad:
        data = run.spec.get("data", {}) if isinstance(run.spec, dict) else {}
        point = ", ".join(f"{k}={data[k]}" for k in ("num_latents", "k", "n_samples") if k in data)
        error = (run.error or "").strip().splitlines()
        body.append(
            (
                run.run_id,
                run.experiment,
                run.task,
                run.method or "",
                run.seed,
                point,
                run.status,
                run.attempts,
                error[-1] if error else "",
            )
        )
    columns = ("run id", "experiment", "task", "method", "seed", "data", "status", "attempts", "error")
    return Table(key, "Runs not done", columns, tuple(body))

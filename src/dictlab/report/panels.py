"""What each figure shows, computed from rows: panels of lines or bars with mean ± std over seeds.

Three shapes of data, one builder each (all pure; drawing is ``figures.py``):

* ``sweep_figure`` — plain runs (no step) of a grid: the metric against the swept variable, one line per label
  (method), one panel per combination of the other grid columns, the MCC chance floor dashed;
* ``curve_figure`` — records with a step (training step, DL-FISTA round, FISTA iterations, λ): the metric
  against the step; one panel per grid point × surgery subject, one line per arm (``warm``, ``cold``), or one
  panel per label with one line per grid point; a label with at most one step is a horizontal reference;
* ``bar_figure`` — plain runs of a surgery: one panel per grid point, one bar group per subject (SAE), one bar
  per arm, the shared references (``fista_oracle``) and the chance floor as horizontal lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

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
    split_label,
)
from dictlab.report.layouts import TaskLayout, chance_metric, is_unit_interval, metric_title
from dictlab.report.published import PublishedSet, PublishedValue

CHANCE = "chance"
# Panels per figure row; more panels wrap.
MAX_COLUMNS = 4


@dataclass(frozen=True)
class Line:
    """A series: ``kind="line"`` is y over x (one Stats per x); ``"reference"`` and ``"chance"`` with one Stats and
    no x are horizontal lines; ``"chance"`` with x is the chance floor along x; ``"published"`` are a paper's values
    at x (hollow markers, no line). ``color_key`` picks its colour."""

    name: str
    x: tuple[float, ...]
    y: tuple[Stats, ...]
    kind: Literal["line", "reference", "chance", "published"] = "line"
    color_key: str = ""


@dataclass(frozen=True)
class Bars:
    """One bar per group (None: no value there) for one arm; ``color_key`` None colours each bar by its group;
    ``hollow`` bars (a paper's values) are drawn as outlines."""

    name: str
    values: tuple[Stats | None, ...]
    color_key: str | None
    hollow: bool = False


@dataclass(frozen=True)
class Panel:
    """One axes: lines, or bar groups with bars and horizontal lines (references, chance); ``xscale`` None
    follows the figure's."""

    title: str
    lines: tuple[Line, ...] = ()
    groups: tuple[str, ...] = ()
    bars: tuple[Bars, ...] = ()
    xscale: Literal["linear", "log", "symlog"] | None = None


@dataclass(frozen=True)
class FigureSpec:
    """A figure: ``kind`` lines or bars, its panels (``columns`` per row, 0: up to ``MAX_COLUMNS``), axis
    labels and scale, caption and alt text."""

    key: str
    metric: str
    kind: Literal["lines", "bars"]
    title: str
    xlabel: str
    ylabel: str
    panels: tuple[Panel, ...]
    xscale: Literal["linear", "log", "symlog"] = "linear"
    unit_interval: bool = False
    columns: int = 0
    caption: str = ""
    alt: str = ""

    @property
    def seeds(self) -> int:
        """The largest number of seeds behind any plotted value."""
        counts = [s.n for p in self.panels for line in p.lines for s in line.y]
        counts += [s.n for p in self.panels for bars in p.bars for s in bars.values if s is not None]
        return max(counts, default=0)


def axis_scale(values: Sequence[float]) -> Literal["linear", "log", "symlog"]:
    """log when the positive values span 20× or more (symlog when 0 is among them), else linear."""
    positive = [v for v in values if v > 0]
    if len(positive) < 2 or any(v < 0 for v in values) or max(positive) / min(positive) < 20:
        return "linear"
    return "symlog" if any(v == 0 for v in values) else "log"


def _line(
    name: str, rows: Sequence[Row], x_of: str, metric: str, kind: Literal["line", "chance"], color: str
) -> Line | None:
    points = []
    for x, group in sorted(group_by(rows, lambda r: r.get(x_of)).items(), key=lambda item: sort_key(item[0])):
        s = seed_stats(group, metric)
        if is_number(x) and s is not None:
            points.append((float(x), s))
    if not points:
        return None
    return Line(name, tuple(p[0] for p in points), tuple(p[1] for p in points), kind, color)


def _level(
    name: str, rows: Sequence[Row], metric: str, kind: Literal["reference", "chance"], color: str
) -> Line | None:
    s = seed_stats(rows, metric)
    return None if s is None else Line(name, (), (s,), kind, color)


def _chance_level(rows: Sequence[Row], metric: str) -> Line | None:
    chance = chance_metric(metric)
    return None if chance is None else _level(CHANCE, rows, chance, "chance", CHANCE)


def _seeds_text(spec: FigureSpec) -> str:
    n = spec.seeds
    spread = "whiskers" if spec.kind == "bars" else "shaded band"
    return f"mean ± std over {n} seeds ({spread})" if n > 1 else "one seed (no spread shown)"


def _alt_lines(spec: FigureSpec) -> str:
    parts = []
    for panel in spec.panels[:3]:
        described = []
        for line in panel.lines[:10]:
            if line.kind == "line" and line.y:
                described.append(
                    f"{line.name} {line.y[0].mean:.3g} at {format_value(line.x[0])} to "
                    f"{line.y[-1].mean:.3g} at {format_value(line.x[-1])}"
                )
            elif line.y:
                described.append(
                    f"{line.name} {line.y[0].mean:.3g}"
                    + (" (chance)" if line.kind == "chance" and line.x == () else "")
                )
        prefix = f"{panel.title}: " if panel.title else ""
        parts.append(prefix + "; ".join(described))
    more = f" ({len(spec.panels) - 3} more panels)" if len(spec.panels) > 3 else ""
    return (
        f"Line chart of {metric_title(spec.metric)} against {spec.xlabel}, {len(spec.panels)} panel(s). "
        + " | ".join(parts)
        + more
    )


def _alt_bars(spec: FigureSpec) -> str:
    parts = []
    for panel in spec.panels[:3]:
        described = [
            f"{group} {bars.name if bars.color_key is not None else ''} {s.mean:.3g}".replace("  ", " ")
            for bars in panel.bars
            for group, s in zip(panel.groups, bars.values, strict=True)
            if s is not None
        ][:16]
        described += [f"{line.name} {line.y[0].mean:.3g}" for line in panel.lines if line.y]
        parts.append((f"{panel.title}: " if panel.title else "") + "; ".join(described))
    more = f" ({len(spec.panels) - 3} more panels)" if len(spec.panels) > 3 else ""
    return f"Bar chart of {metric_title(spec.metric)}, {len(spec.panels)} panel(s). " + " | ".join(parts) + more


def _finish(spec: FigureSpec, what: str, extra: str = "") -> FigureSpec:
    caption = f"{metric_title(spec.metric)} ({spec.metric}): {what}; {_seeds_text(spec)}."
    if any(line.kind == "chance" for p in spec.panels for line in p.lines):
        caption += " Dotted grey: MCC chance floor (the same codes with rows permuted)."
    caption += extra
    alt = _alt_bars(spec) if spec.kind == "bars" else _alt_lines(spec)
    return FigureSpec(**{**spec.__dict__, "caption": caption, "alt": alt})


PUBLISHED_NAME = "published"


def _published_lines(labels: Sequence[str], published: Sequence[PublishedValue], source: str) -> list[Line]:
    """One hollow-marker series per label that has published values of the figure's metric, in its colour."""
    lines = []
    for label in labels:
        points = sorted((v.x, v.value) for v in published if v.label == label and v.x is not None)
        if points:
            values = tuple(Stats(value, 0.0, 1) for _, value in points)
            lines.append(Line(f"{PUBLISHED_NAME} ({source})", tuple(x for x, _ in points), values, "published", label))
    return lines


def sweep_figure(
    rows: Sequence[Row],
    metric: str,
    axes: SweepAxes,
    key: str,
    published: PublishedSet | None = None,
) -> FigureSpec | None:
    """``metric`` against ``axes.x``: one line per label, one panel per facet point; None without data.
    ``published``: a paper's values of the same metric along the same x, drawn as hollow markers."""
    rows = [r for r in rows if r.get("step") is None and is_number(r.get(metric))]
    if axes.x is None or not rows:
        return None
    panels = []
    facet_groups = group_by(rows, lambda r: grid_point(r, axes.facets))
    for point, group in sorted(facet_groups.items(), key=lambda item: [sort_key(v) for v in item[0]]):
        lines = [
            line
            for label, label_rows in group_by(group, lambda r: r["label"]).items()
            if (line := _line(label, label_rows, axes.x, metric, "line", label)) is not None
        ]
        chance = chance_metric(metric)
        if chance is not None and (floor := _line(CHANCE, group, axes.x, chance, "chance", CHANCE)) is not None:
            lines.append(floor)
        if lines and published is not None and published.x_field == axes.x:
            labels = [line.name for line in lines if line.kind == "line"]
            lines += _published_lines(labels, published.for_metric(metric), published.source)
        if lines:
            panels.append(Panel(describe_point(axes.facets, point), tuple(lines)))
    if not panels:
        return None
    xs = [x for p in panels for line in p.lines for x in line.x]
    spec = FigureSpec(
        key,
        metric,
        "lines",
        f"{metric_title(metric)} vs {short_name(axes.x)}",
        short_name(axes.x),
        metric_title(metric),
        tuple(panels),
        axis_scale(xs),
        is_unit_interval(metric),
    )
    facets = f", one panel per {', '.join(short_name(f) for f in axes.facets)}" if axes.facets else ""
    extra = _published_note(spec)
    return _finish(spec, f"against {short_name(axes.x)}, one line per method{facets}", extra)


def _published_note(spec: FigureSpec) -> str:
    hollow = any(line.kind == "published" for p in spec.panels for line in p.lines)
    hollow = hollow or any(bars.hollow for p in spec.panels for bars in p.bars)
    return " Hollow: the published value, in the method's colour, at the paper's full scale." if hollow else ""


def curve_figure(
    rows: Sequence[Row], metric: str, grid: Sequence[str], subjects: Sequence[str], layout: TaskLayout, key: str
) -> FigureSpec | None:
    """``metric`` against ``step`` (see the module docstring); None when no record with a step has it."""
    rows = [r for r in rows if is_number(r.get(metric))]
    if not any(r.get("step") is not None for r in rows):
        return None
    points = sorted(
        group_by(rows, lambda r: grid_point(r, grid)).items(), key=lambda item: [sort_key(v) for v in item[0]]
    )
    panels: list[Panel] = []
    if layout.curve_panels == "label":
        for label, label_rows in group_by([r for r in rows if r.get("step") is not None], lambda r: r["label"]).items():
            lines = []
            for point, point_rows in sorted(
                group_by(label_rows, lambda r: grid_point(r, grid)).items(),
                key=lambda item: [sort_key(v) for v in item[0]],
            ):
                name = describe_point(grid, point) or label
                line = _line(name, point_rows, "step", metric, "line", f"grid:{describe_point(grid, point)}")
                if line is not None:
                    lines.append(line)
            panels.append(Panel(label, tuple(lines), xscale=axis_scale([x for line in lines for x in line.x])))
        what = f"against {layout.step_name}, one panel per method (its own x axis), one line per grid point"
        columns = 0
    else:
        for point, point_rows in points:
            by_label = group_by(point_rows, lambda r: r["label"])
            curve_subjects: list[str | None] = [
                s
                for s in subjects
                if any(
                    split_label(label, subjects)[1] == s and any(r.get("step") is not None for r in lr)
                    for label, lr in by_label.items()
                )
            ]
            for subject in curve_subjects or [None]:
                lines = []
                for label, label_rows in by_label.items():
                    arm, owner = split_label(label, subjects)
                    if owner is not None and owner != subject:
                        continue
                    name = arm if owner is not None else label
                    steps = {r.get("step") for r in label_rows if r.get("step") is not None}
                    line = (
                        _line(name, label_rows, "step", metric, "line", name)
                        if len(steps) >= 2
                        else _level(name, label_rows, metric, "reference", name)
                    )
                    if line is not None:
                        lines.append(line)
                floor = _chance_level(point_rows, metric)
                if floor is not None:
                    lines.append(floor)
                title = ", ".join(t for t in (subject or "", describe_point(grid, point)) if t)
                if any(line.kind == "line" for line in lines):
                    panels.append(Panel(title, tuple(lines)))
        what = f"against {layout.step_name}, one line per arm, one panel per subject" + (
            " and grid point" if grid else ""
        )
        # a row per grid point when the subjects fit in one row
        columns = len(subjects) if 1 < len(subjects) <= MAX_COLUMNS + 1 else 0
    panels = [p for p in panels if p.lines]
    if not panels:
        return None
    xs = [x for p in panels for line in p.lines for x in line.x]
    spec = FigureSpec(
        key,
        metric,
        "lines",
        f"{metric_title(metric)} {layout.step_title}",
        layout.step_name,
        metric_title(metric),
        tuple(panels),
        axis_scale(xs),
        is_unit_interval(metric),
        columns,
    )
    extra = (
        " Dashed: references with a single value (drawn across)."
        if any(line.kind == "reference" for p in panels for line in p.lines)
        else ""
    )
    return _finish(spec, what, extra)


def bar_figure(
    rows: Sequence[Row],
    metric: str,
    grid: Sequence[str],
    subjects: Sequence[str],
    key: str,
    published: PublishedSet | None = None,
) -> FigureSpec | None:
    """One panel per grid point; bar groups per subject (or per label without subjects), bars per arm.
    ``published``: a paper's values of the metric for a single setting, drawn as a hollow bar beside each label's."""
    rows = [r for r in rows if r.get("step") is None and is_number(r.get(metric))]
    if not rows:
        return None
    panels = []
    for point, point_rows in sorted(
        group_by(rows, lambda r: grid_point(r, grid)).items(), key=lambda item: [sort_key(v) for v in item[0]]
    ):
        by_label = group_by(point_rows, lambda r: r["label"])
        parts = {label: split_label(label, subjects) for label in by_label}
        groups = [s for s in subjects if any(owner == s for _, owner in parts.values())]
        lines = []
        bars: list[Bars] = []
        if groups:
            arms = list(dict.fromkeys(arm for arm, owner in parts.values() if owner is not None))
            for arm in arms:
                values = []
                for subject in groups:
                    label_rows = [r for label, lr in by_label.items() if parts[label] == (arm, subject) for r in lr]
                    values.append(seed_stats(label_rows, metric))
                bars.append(Bars(arm, tuple(values), arm))
            for label, (_arm, owner) in parts.items():
                if owner is None and (level := _level(label, by_label[label], metric, "reference", label)) is not None:
                    lines.append(level)
        else:
            groups = list(by_label)
            bars.append(Bars(metric_title(metric), tuple(seed_stats(by_label[g], metric) for g in groups), None))
            paper = {v.label: v.value for v in published.for_metric(metric) if v.x is None} if published else {}
            if published is not None and any(g in paper for g in groups):
                paper_values = tuple(Stats(paper[g], 0.0, 1) if g in paper else None for g in groups)
                bars.append(Bars(f"{PUBLISHED_NAME} ({published.source})", paper_values, None, hollow=True))
        floor = _chance_level(point_rows, metric)
        if floor is not None:
            lines.append(floor)
        panels.append(Panel(describe_point(grid, point), tuple(lines), tuple(groups), tuple(bars)))
    spec = FigureSpec(
        key,
        metric,
        "bars",
        metric_title(metric),
        "",
        metric_title(metric),
        tuple(panels),
        unit_interval=is_unit_interval(metric),
    )
    has_subjects = any(b.color_key is not None for p in panels for b in p.bars)
    what = "one bar group per subject, one bar per arm" if has_subjects else "one bar per label"
    what += ", one panel per grid point" if grid else ""
    extra = (
        " Dashed: references (e.g. fista_oracle), the same for every group."
        if any(line.kind == "reference" for p in panels for line in p.lines)
        else ""
    )
    return _finish(spec, what, extra + _published_note(spec))

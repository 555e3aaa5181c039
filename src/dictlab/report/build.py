"""``build_report``: the results store (or its rows) → PNG/SVG figures and one self-contained ``index.html``.

Records are grouped by experiment and task; each group gets the figures and tables its ``TaskLayout`` asks
for (``panels.py`` decides their content, ``figures.py`` draws them, ``tables.py`` and ``html.py`` lay out
the page). A metric a task did not record is skipped, never an error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dictlab.report.aggregate import (
    Row,
    fixed_settings,
    format_value,
    grid_columns,
    group_by,
    is_number,
    metric_names,
    subjects_of,
    sweep_axes,
)
from dictlab.report.figures import FORMATS, PNG_DPI, color_keys, draw, palette, render
from dictlab.report.html import EmbeddedFigure, Section, render_page
from dictlab.report.layouts import HEADLINE, LAYOUTS, TaskLayout, layout_for
from dictlab.report.panels import FigureSpec, bar_figure, curve_figure, sweep_figure
from dictlab.report.phase import PhaseFigure, draw_phase, store_phase_figures
from dictlab.report.published import published_for
from dictlab.report.tables import (
    Table,
    failed_runs_table,
    pivot_table,
    published_table,
    run_count_table,
    summary_table,
)

if TYPE_CHECKING:
    from dictlab.experiments.store import ResultStore, StoredRun

# Sweep metrics that also get a label × swept-value table (the study's tables).
PIVOT_METRICS = ("mcc_id", "mcc_ood")
FIGURES_DIR = "figures"
# Figures wider than this (pixels) take a whole row of the page; narrower ones sit two to a row.
WIDE_PX = 700


def slug(text: str) -> str:
    """A file- and id-safe name: lowercase letters, digits, ``-`` and ``_``."""
    return re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-") or "x"


@dataclass(frozen=True)
class SectionContent:
    """What one experiment × task shows, before rendering: figure specs and tables."""

    experiment: str
    task: str
    layout: TaskLayout
    figures: tuple[FigureSpec | PhaseFigure, ...]
    tables: tuple[Table, ...]
    settings: dict[str, Any]


def _metrics_of(layout: TaskLayout, task: str, rows: Sequence[Row]) -> tuple[str, ...]:
    present = [m for m in layout.metrics if any(is_number(r.get(m)) for r in rows)]
    if present or task in LAYOUTS:
        return tuple(present)
    return tuple(metric_names(rows)[:4])  # an unknown task without the headline metrics: show what it has


def section_content(experiment: str, task: str, rows: Sequence[Row]) -> SectionContent:
    """Figures and tables of one experiment × task (pure: rows in, specs out)."""
    layout = layout_for(task)
    grid = grid_columns(rows)
    subjects = subjects_of(rows)
    plain = [r for r in rows if r.get("step") is None]
    axes = sweep_axes(plain, grid) if plain else sweep_axes(rows, grid)
    base = slug(f"{experiment}-{task}")
    figures: list[FigureSpec | PhaseFigure] = []
    published = published_for(experiment)
    for metric in _metrics_of(layout, task, rows):
        key = f"{base}-{slug(metric)}"
        has_curve = any(r.get("step") is not None and is_number(r.get(metric)) for r in rows)
        if has_curve:
            spec = curve_figure(rows, metric, grid, subjects, layout, key)
        elif not subjects and axes.x is not None:
            spec = sweep_figure(rows, metric, axes, key, published)
        else:
            spec = bar_figure(rows, metric, grid, subjects, key, published)
        if spec is not None:
            figures.append(spec)
    for metric in layout.phase_metrics:  # heat maps over (δ, ρ) when the sweep varies input_dim at a fixed (p, k)
        figures.extend(store_phase_figures(rows, grid, base, metric))
    tables = []
    summary = summary_table(rows, grid, layout.table_metrics or HEADLINE, f"{base}-summary", layout.table_step)
    if summary is not None:
        tables.append(summary)
    if published is not None and (side := published_table(rows, published, f"{base}-published")) is not None:
        tables.append(side)
    if not subjects and axes.x is not None and not any(r.get("step") is not None for r in rows):
        for metric in PIVOT_METRICS:
            pivot = pivot_table(rows, metric, axes, f"{base}-pivot-{slug(metric)}")
            if pivot is not None:
                tables.append(pivot)
    return SectionContent(experiment, task, layout, tuple(figures), tuple(tables), fixed_settings(rows))


def _load(source: Any, experiment: str | None) -> tuple[list[Row], list[StoredRun] | None, str]:
    from dictlab.experiments.store import ResultStore

    if isinstance(source, ResultStore):
        return source.records(experiment=experiment), source.runs(experiment=experiment), str(source.path)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(
                f"no results store at {path}; give the .sqlite file a sweep wrote (default dictlab-runs/results.sqlite)"
            )
        with ResultStore(path) as store:
            return store.records(experiment=experiment), store.runs(experiment=experiment), str(path)
    if isinstance(source, Sequence) and all(isinstance(r, dict) for r in source):
        rows = [r for r in source if experiment is None or r.get("experiment") == experiment]
        return rows, None, "rows given directly"
    raise ValueError(
        f"build_report needs a store path, a ResultStore or a list of record rows, got {type(source).__name__}"
    )


def _description(experiment: str, task: str) -> str:
    """The shipped preset's description when the experiment is named like a preset of the same task."""
    try:
        from dictlab.experiments.spec import load_preset

        preset = load_preset(experiment)
    except (ImportError, ValueError):
        return ""
    text = str(getattr(preset, "description", "") or "") if getattr(preset, "task", None) == task else ""
    # the runs may have overridden the preset (--set, --quick): say whose words these are
    return f"Preset {experiment}: {text}" if text else ""


def _settings_text(settings: dict[str, Any]) -> str:
    shown = {k: v for k, v in settings.items() if v is not None}
    auto = [k for k in ("input_dim", "num_ood") if k in settings and settings[k] is None]
    text = ", ".join(f"{k}={format_value(v)}" for k, v in shown.items())
    if auto:
        text += "; " + ", ".join(f"{k} from its default rule" for k in auto)
    return f"Fixed data settings: {text}." if text else ""


def _versions(runs: Sequence[StoredRun] | None) -> str:
    if not runs:
        return ""
    seen: dict[str, set[str]] = {}
    for run in runs:
        for name, version in (run.versions or {}).items():
            seen.setdefault(name, set()).add(str(version))
    return ", ".join(f"{name} {'/'.join(sorted(v))}" for name, v in sorted(seen.items()))


def build_report(
    store_path_or_rows: str | Path | ResultStore | Sequence[Row],
    out_dir: str | Path,
    *,
    experiment: str | None = None,
    formats: Sequence[str] = FORMATS,
    title: str | None = None,
) -> Path:
    """Write figures (``out_dir/figures/<experiment>-<task>-<metric>.<fmt>`` per format) and the self-contained
    page ``out_dir/index.html``; return the page's path.

    store_path_or_rows : a results store (path or open ``ResultStore``) or rows of ``ResultStore.records()``.
    experiment : only this experiment (default: every experiment in the store).
    formats : figure files to write, a subset of ("png", "svg"); the page embeds the PNG (else inlines the SVG).
    """
    from dictlab import __version__

    formats = tuple(dict.fromkeys(formats))
    if not formats or any(f not in FORMATS for f in formats):
        raise ValueError(f"formats={formats!r}: give one or more of {', '.join(FORMATS)}")
    rows, runs, source = _load(store_path_or_rows, experiment)
    if not rows and not runs:
        what = f"experiment {experiment!r}" if experiment else "any experiment"
        raise ValueError(f"no records of {what} in {source}; run a sweep first (dictlab sweep …)")
    out = Path(out_dir)
    figures_dir = out / FIGURES_DIR
    figures_dir.mkdir(parents=True, exist_ok=True)
    embed = "png" if "png" in formats else "svg"

    sections = []
    for (exp, task), group in group_by(rows, lambda r: (str(r.get("experiment")), str(r.get("task")))).items():
        content = section_content(exp, task, group)
        colors = palette(key for spec in content.figures if isinstance(spec, FigureSpec) for key in color_keys(spec))
        embedded = []
        for spec in content.figures:
            fig = draw_phase(spec) if isinstance(spec, PhaseFigure) else draw(spec, colors)
            rendered = render(fig, formats if embed in formats else (*formats, embed))
            files = []
            for fmt in formats:
                (figures_dir / f"{spec.key}.{fmt}").write_bytes(rendered[fmt])
                files.append(f"{FIGURES_DIR}/{spec.key}.{fmt}")
            mime = "image/png" if embed == "png" else "image/svg+xml"
            wide = fig.get_size_inches()[0] * PNG_DPI > WIDE_PX
            embedded.append(
                EmbeddedFigure(spec.key, spec.title, spec.caption, spec.alt, mime, rendered[embed], tuple(files), wide)
            )
        n_runs = len({r.get("run_id") for r in group})
        sections.append(
            Section(
                key=slug(f"{exp}-{task}"),
                title=f"{exp} — {content.layout.title or task}" + (f" ({task})" if content.layout.title else ""),
                description=_description(exp, task),
                settings=_settings_text(content.settings),
                figures=tuple(embedded),
                tables=content.tables,
                notes=(f"{n_runs} runs with records, {len(group)} records.",),
            )
        )

    front: list[Table] = [run_count_table(runs, rows, "runs")]
    failed = failed_runs_table(runs, "runs-not-done") if runs else None
    if failed is not None:
        front.append(failed)
    experiments = list(dict.fromkeys(str(r.get("experiment")) for r in rows))
    n_runs = len(runs) if runs is not None else len({r.get("run_id") for r in rows})
    meta = [
        ("experiment", experiment or ", ".join(experiments)),
        ("generated", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("dictlab", __version__),
        ("runs", f"{n_runs} ({sum(r.status == 'done' for r in runs)} done)" if runs is not None else str(n_runs)),
        ("source", source),
    ]
    versions = _versions(runs)
    if versions:
        meta.append(("run versions", versions))
    page = render_page(
        title or ("dictlab report: " + experiments[0] if len(experiments) == 1 else "dictlab report"),
        "Sparse dictionary learning with ground truth — sweeps and surgeries of arXiv 2603.28744",
        meta,
        front,
        sections,
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index

"""Phase-diagram heat maps over (δ = m/p, ρ = k/m) with the theoretical ℓ1 curve overlaid.

Two sources, one drawing (``draw_phase``, one panel per solver or method, a shared colour bar):

* ``diagram_figure`` — empirical diagrams of ``dictlab.theory.phase_diagram`` (coders given the true dictionary):
  colour = success probability per grid cell, ``trials`` codes per cell (``dictlab phase-diagram``);
* ``store_phase_figures`` — stored runs of a sweep over the compressed-sensing grid (the ``phase-transition``
  preset): every run is placed at δ = input_dim/num_latents, ρ = k/input_dim and binned into fixed cells of
  width 0.1 on both axes; colour = the fraction of the (seed, grid point) runs in a cell with mcc_ood ≥ 0.95,
  and a second figure the mean mcc_ood. Drawn when ``is_phase_sweep`` holds (see there for the rule).

The curve is ``l1_phase_curve``: solid for non-negative codes (the simplex curve: the compositional generator's
codes are non-negative), dashed for signed codes (the cross-polytope curve). It is the asymptotic limit of ℓ1
recovery with the TRUE dictionary — for learned dictionaries a reference line, not a prediction.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dictlab.report.aggregate import Row, group_by, is_number, short_name
from dictlab.report.layouts import metric_title
from dictlab.theory import PhaseDiagram, l1_phase_curve

XLABEL = "δ = m/p (measurements / latents)"
YLABEL = "ρ = k/m"
# Stored runs are binned into cells of this width on both axes (δ, ρ ∈ (0, 1]).
STORE_BINS = 10
# A stored run "succeeds" when its metric reaches this value.
SUCCESS_THRESHOLD = 0.95
PHASE_COLUMNS = ("data.num_latents", "data.k", "data.input_dim")
MAX_PANEL_COLUMNS = 3


@dataclass(frozen=True)
class HeatPanel:
    """One heat map: cell edges on both axes, values (len(rho_edges) − 1, len(delta_edges) − 1) with NaN where a
    cell has no data, and the number of trials or runs behind each cell."""

    title: str
    delta_edges: tuple[float, ...]
    rho_edges: tuple[float, ...]
    values: tuple[tuple[float, ...], ...]
    counts: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class PhaseFigure:
    """A figure of heat-map panels. ``curves``: which ℓ1 curves to overlay (``"nonneg"`` solid, ``"signed"``
    dashed). ``key``, ``title``, ``caption`` and ``alt`` as for the report's other figures."""

    key: str
    metric: str
    title: str
    colorbar_label: str
    panels: tuple[HeatPanel, ...]
    curves: tuple[str, ...]
    caption: str = ""
    alt: str = ""


def edges_from_centres(centres: Sequence[float]) -> tuple[float, ...]:
    """Cell edges around sorted grid centres: midpoints between neighbours, the ends mirrored (clipped to [0, 1])."""
    c = [float(v) for v in centres]
    if len(c) == 1:
        half = min(c[0], 1.0 - c[0], 0.05) or 0.05
        return (max(0.0, c[0] - half), min(1.0, c[0] + half))
    mids = [(a + b) / 2 for a, b in itertools.pairwise(c)]
    first, last = c[0] - (mids[0] - c[0]), c[-1] + (c[-1] - mids[-1])
    return (max(0.0, first), *mids, min(1.0, last))


def diagram_panel(diagram: PhaseDiagram) -> HeatPanel:
    """The heat map of an empirical diagram on its nominal grid."""
    order_d = sorted(range(len(diagram.deltas)), key=lambda j: diagram.deltas[j])
    order_r = sorted(range(len(diagram.rhos)), key=lambda i: diagram.rhos[i])
    success = diagram.success.tolist()
    values = tuple(tuple(float(success[i][j]) for j in order_d) for i in order_r)
    counts = tuple(tuple(diagram.trials for _ in order_d) for _ in order_r)
    title = f"{diagram.solver} ({diagram.trials} trials per cell)"
    return HeatPanel(
        title,
        edges_from_centres([diagram.deltas[j] for j in order_d]),
        edges_from_centres([diagram.rhos[i] for i in order_r]),
        values,
        counts,
    )


def diagram_figure(diagrams: Sequence[PhaseDiagram], key: str = "phase-diagram") -> PhaseFigure:
    """One panel per diagram (solver), success probability coloured, the matching ℓ1 curve overlaid."""
    if not diagrams:
        raise ValueError("diagram_figure needs at least one PhaseDiagram")
    nonneg = {d.nonneg for d in diagrams}
    p = sorted({d.p for d in diagrams})
    trials = sorted({d.trials for d in diagrams})
    codes = "non-negative" if nonneg == {True} else "signed" if nonneg == {False} else "mixed"
    solvers = ", ".join(d.solver for d in diagrams)
    title = f"Phase diagrams with the true dictionary: {solvers} (p = {'/'.join(map(str, p))}, {codes} codes)"
    panels = tuple(diagram_panel(d) for d in diagrams)
    caption = (
        f"Success probability of {solvers} per (δ, ρ) cell, {'/'.join(map(str, trials))} trials per cell "
        f"(random Gaussian unit-norm dictionary per cell, {codes} codes with magnitudes in [1, 2]); success: "
        f"relative error ≤ {diagrams[0].tol:g} after least squares on the detected support. Line: the ℓ1 weak "
        "phase transition (statistical dimension of the ℓ1 descent cone)."
    )
    curves = tuple("nonneg" if n else "signed" for n in sorted(nonneg, reverse=True))
    return _with_alt(PhaseFigure(key, "success", title, "success probability", panels, curves, caption))


def is_phase_sweep(rows: Sequence[Row], grid: Sequence[str]) -> bool:
    """The rule for a stored phase figure: num_latents, k and input_dim are numeric in every plain record,
    input_dim is a grid column, and some (num_latents, k) occurs with at least two input_dims — i.e. the
    measurement ratio is swept at a fixed problem, which is what sweeping ``cs_constant`` gives (the canonical
    data spec resolves cs_constant into input_dim) or sweeping input_dim itself. A plain sweep over num_latents
    with input_dim from the bound moves δ and ρ along one curve and gets no phase figure."""
    plain = [r for r in rows if r.get("step") is None]
    if "data.input_dim" not in grid or not plain:
        return False
    if not all(is_number(r.get(c)) for r in plain for c in PHASE_COLUMNS):
        return False
    dims: dict[tuple[Hashable, Hashable], set[Hashable]] = {}
    for r in plain:
        dims.setdefault((r["data.num_latents"], r["data.k"]), set()).add(r["data.input_dim"])
    return any(len(v) > 1 for v in dims.values())


def phase_point(row: Row) -> tuple[float, float]:
    """(δ, ρ) = (input_dim / num_latents, k / input_dim) of a stored run."""
    m = float(row["data.input_dim"])
    return m / float(row["data.num_latents"]), float(row["data.k"]) / m


def bin_index(value: float, bins: int = STORE_BINS) -> int:
    """The cell of ``value`` ∈ (0, 1] among ``bins`` cells (i/bins, (i+1)/bins], right edge included."""
    return min(bins - 1, max(0, math.ceil(value * bins - 1e-9) - 1))


def binned_cells(
    rows: Sequence[Row], metric: str, threshold: float | None, bins: int = STORE_BINS
) -> tuple[tuple[tuple[float, ...], ...], tuple[tuple[int, ...], ...]]:
    """(values, counts), both (bins, bins) indexed [ρ cell][δ cell]: the fraction of rows with ``metric`` ≥
    ``threshold`` (the mean of ``metric`` when ``threshold`` is None), NaN and 0 where a cell has no row."""
    cells: dict[tuple[int, int], list[float]] = {}
    for row in rows:
        value = row.get(metric)
        if row.get("step") is not None or not is_number(value):
            continue
        delta, rho = phase_point(row)
        cells.setdefault((bin_index(rho, bins), bin_index(delta, bins)), []).append(float(value))
    values, counts = [], []
    for i in range(bins):
        value_row, count_row = [], []
        for j in range(bins):
            got = cells.get((i, j), [])
            if not got:
                value_row.append(math.nan)
            elif threshold is None:
                value_row.append(math.fsum(got) / len(got))
            else:
                value_row.append(sum(v >= threshold for v in got) / len(got))
            count_row.append(len(got))
        values.append(tuple(value_row))
        counts.append(tuple(count_row))
    return tuple(values), tuple(counts)


def store_phase_figures(
    rows: Sequence[Row], grid: Sequence[str], key: str, metric: str = "mcc_ood"
) -> list[PhaseFigure]:
    """The stored runs' phase figures (module docstring): [fraction with ``metric`` ≥ 0.95, mean ``metric``], one
    panel per label (method); [] unless ``is_phase_sweep`` holds and some record has ``metric``."""
    plain = [r for r in rows if r.get("step") is None and is_number(r.get(metric))]
    if not plain or not is_phase_sweep(plain, grid):
        return []
    edges = tuple(i / STORE_BINS for i in range(STORE_BINS + 1))
    swept = ", ".join(short_name(c) for c in grid)
    out = []
    for threshold in (SUCCESS_THRESHOLD, None):
        panels = []
        for label, group in group_by(plain, lambda r: str(r.get("label"))).items():
            values, counts = binned_cells(group, metric, threshold)
            runs = sum(map(sum, counts))
            panels.append(HeatPanel(f"{label} ({runs} runs)", edges, edges, values, counts))
        all_counts = [c for p in panels for row in p.counts for c in row if c]
        per_cell = f"{min(all_counts)}–{max(all_counts)}" if min(all_counts) != max(all_counts) else str(all_counts[0])
        name = metric_title(metric)
        if threshold is not None:
            title = f"Phase diagram: share of runs with {name} ≥ {threshold:g}, per method"
            colour = f"fraction of runs with {metric} ≥ {threshold:g}"
            what = f"the fraction of (seed, grid point) runs in the cell with {metric} ≥ {threshold:g}"
            suffix = "phase-success"
        else:
            title = f"Phase diagram: mean {name}, per method"
            colour = f"mean {metric}"
            what = f"the mean {metric} of the runs in the cell"
            suffix = "phase-mean"
        caption = (
            f"Every stored run at δ = input_dim/num_latents, ρ = k/input_dim (grid over {swept}), binned into cells of "
            f"width {1 / STORE_BINS:g}; colour: {what}; {per_cell} runs per non-empty cell (blank: none). Lines: the "
            "ℓ1 weak phase transition with the true dictionary — solid for non-negative codes (the generator's), "
            "dashed for signed codes; a reference, not a prediction for learned dictionaries."
        )
        out.append(
            _with_alt(
                PhaseFigure(
                    f"{key}-{suffix}-{metric}", metric, title, colour, tuple(panels), ("nonneg", "signed"), caption
                )
            )
        )
    return out


def _with_alt(spec: PhaseFigure) -> PhaseFigure:
    parts = []
    for panel in spec.panels[:4]:
        filled = [v for row in panel.values for v in row if not math.isnan(v)]
        if filled:
            parts.append(f"{panel.title}: {len(filled)} cells, values {min(filled):.2g} to {max(filled):.2g}")
        else:
            parts.append(f"{panel.title}: no data")
    more = f" ({len(spec.panels) - 4} more panels)" if len(spec.panels) > 4 else ""
    alt = (
        f"Heat map of {spec.colorbar_label} over δ = m/p (x) and ρ = k/m (y), {len(spec.panels)} panel(s), with "
        "the theoretical ℓ1 phase-transition curve. " + " | ".join(parts) + more
    )
    return PhaseFigure(**{**spec.__dict__, "alt": alt})


def _theory_curves(ax: Axes, curves: Sequence[str]) -> None:
    delta = np.linspace(0.002, 1.0, 250)
    for name in curves:
        rho = l1_phase_curve(delta, nonneg=name == "nonneg").numpy()
        label = "ℓ1 curve, non-negative codes" if name == "nonneg" else "ℓ1 curve, signed codes"
        solid = name == "nonneg"
        ax.plot(delta, rho, color="#d62728" if solid else "#ff7f0e", lw=1.6, ls="-" if solid else "--", label=label)


def draw_phase(spec: PhaseFigure) -> Figure:
    """The matplotlib Figure of ``spec`` on the Agg canvas: heat maps (viridis, 0–1), the ℓ1 curves, a colour bar."""
    n = len(spec.panels)
    cols = min(n, MAX_PANEL_COLUMNS)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(cols * 3.6 + 1.4, rows * 3.2 + 0.7), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#f2f2f2")
    mesh = None
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_visible(False)
            continue
        panel = spec.panels[i]
        values = np.ma.masked_invalid(np.asarray(panel.values, dtype=float))
        mesh = ax.pcolormesh(
            panel.delta_edges,
            panel.rho_edges,
            values,
            cmap=cmap,
            vmin=0.0,
            vmax=1.0,
            shading="flat",
            edgecolors="white",
            linewidth=0.3,
        )
        _theory_curves(ax, spec.curves)
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.0)
        ax.set_title(panel.title, fontsize=9)
        ax.tick_params(labelsize=8)
        if i % cols == 0:
            ax.set_ylabel(YLABEL, fontsize=9)
        if i >= n - cols:
            ax.set_xlabel(XLABEL, fontsize=9)
    if mesh is not None:
        bar = fig.colorbar(mesh, ax=axes.ravel().tolist(), shrink=0.85)
        bar.set_label(spec.colorbar_label, fontsize=9)
        bar.ax.tick_params(labelsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    fig.suptitle(spec.title, fontsize=11, fontweight="bold")
    return fig

"""Drawing ``FigureSpec``s with matplotlib's object API on the Agg canvas (no pyplot, no global state, no
display needed) and rendering them to PNG/SVG bytes."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

try:
    import matplotlib
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("dictlab's report draws with matplotlib: pip install 'matplotlib>=3.7'") from None
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from dictlab.report.aggregate import format_value
from dictlab.report.panels import CHANCE, MAX_COLUMNS, FigureSpec, Line, Panel

FORMATS = ("png", "svg")
Handle = Line2D | BarContainer  # what the figure legend shows for a name
PNG_DPI = 100
CHANCE_COLOR = "#7f7f7f"
# Fixed colours of the study's methods and of the surgeries' arms, so a name looks the same in every figure.
KNOWN_COLORS = {
    "fista_oracle": "#111111",
    CHANCE: CHANCE_COLOR,
    "dl_fista": "#1f77b4",
    "softplus_adam": "#17becf",
    "linear_probe": "#2ca02c",
    "sae_relu": "#ff7f0e",
    "sae_topk": "#d62728",
    "sae_batchtopk": "#e377c2",
    "sae_jumprelu": "#9467bd",
    "sae_mp": "#8c564b",
    "pca": "#bcbd22",
    "own encoder": "#d62728",
    "fista": "#1f77b4",
    "renormed": "#17becf",
    "oracle_norms": "#9467bd",
    "refined": "#2ca02c",
    "support_lstsq": "#ff7f0e",
    "warm": "#ff7f0e",
    "cold": "#1f77b4",
    "warm_dl": "#ff7f0e",
    "cold_dl": "#1f77b4",
    "warm_dl_rounds": "#ff7f0e",
    "cold_dl_rounds": "#1f77b4",
    "to_tolerance": "#2ca02c",
}
_SPARE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
]
_MARKERS = "osD^vP*Xph<>"


def palette(keys: Iterable[str]) -> dict[str, str]:
    """A colour for every key: the fixed colour of known names, spare colours in first-seen order for the
    rest (not reusing a colour already taken among these keys while spares last), viridis along ``grid:`` keys."""
    keys = list(dict.fromkeys(keys))
    out = {k: KNOWN_COLORS[k] for k in keys if k in KNOWN_COLORS}
    grid = [k for k in keys if k.startswith("grid:")]
    cmap = matplotlib.colormaps["viridis"]
    for i, k in enumerate(grid):
        out[k] = matplotlib.colors.to_hex(cmap(0.85 * i / max(len(grid) - 1, 1)))
    spare = [c for c in _SPARE if c not in out.values()] or _SPARE
    for i, k in enumerate(k for k in keys if k not in out):
        out[k] = spare[i % len(spare)]
    return out


def color_keys(spec: FigureSpec) -> list[str]:
    """Every colour key a figure uses (line keys, arm keys, bar groups coloured per label)."""
    keys = [line.color_key for p in spec.panels for line in p.lines]
    for p in spec.panels:
        for bars in p.bars:
            keys.extend([bars.color_key] if bars.color_key is not None else p.groups)
    return keys


def _grid_shape(n: int, columns: int) -> tuple[int, int]:
    cols = min(n, columns or MAX_COLUMNS)
    return math.ceil(n / cols), cols


def _panel_size(spec: FigureSpec) -> tuple[float, float]:
    if spec.kind == "bars":
        groups = max(len(p.groups) for p in spec.panels)
        bars = max((len(p.bars) for p in spec.panels), default=1)
        per_group = 0.3 + 0.22 * bars if any(b.color_key is not None for p in spec.panels for b in p.bars) else 0.55
        return max(3.2, 0.9 + groups * per_group), 2.8
    return (4.6, 3.0) if len(spec.panels) == 1 else (3.5, 2.7)


def draw(spec: FigureSpec, colors: dict[str, str] | None = None) -> Figure:
    """The matplotlib Figure of ``spec`` (Agg canvas). ``colors`` maps colour keys to colours (default
    ``palette`` of the figure's own keys; pass one palette to keep names the same colour across figures)."""
    colors = colors if colors is not None else palette(color_keys(spec))
    rows, cols = _grid_shape(len(spec.panels), spec.columns)
    width, height = _panel_size(spec)
    wide = spec.kind == "bars" or len(spec.panels) > 1
    fig = Figure(figsize=(min(cols * width + (2.2 if wide else 1.8), 18.0), rows * height + 0.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=spec.unit_interval)
    handles: dict[str, Handle] = {}
    for i, ax in enumerate(axes.flat):
        if i >= len(spec.panels):
            ax.set_visible(False)
            continue
        panel = spec.panels[i]
        if spec.kind == "bars":
            _draw_bars(ax, panel, colors, handles)
        else:
            _draw_lines(ax, panel, spec, colors, handles)
        _style(ax, panel, spec, first_col=i % cols == 0, bottom=i >= len(spec.panels) - cols)
    fig.suptitle(spec.title, fontsize=11, fontweight="bold")
    if handles:
        # a BarContainer is a tuple of patches, which legend() takes; the stubs only allow Iterable[Artist]
        fig.legend(  # type: ignore[call-overload]
            list(handles.values()), list(handles), loc="outside right upper", fontsize=8, frameon=False
        )
    return fig


def _draw_lines(ax: Axes, panel: Panel, spec: FigureSpec, colors: dict[str, str], handles: dict[str, Handle]) -> None:
    for n, line in enumerate(panel.lines):
        color = colors.get(line.color_key, CHANCE_COLOR)
        means = [s.mean for s in line.y]
        stds = [s.std for s in line.y]
        if line.kind == "published":  # a paper's values: hollow markers in the method's colour, no line
            ax.plot(line.x, means, ls="none", marker="o", ms=6, mfc="none", mec=color, mew=1.3)
            proxy = Line2D([], [], ls="none", marker="o", ms=6, mfc="none", mec=CHANCE_COLOR, mew=1.3)
            handles.setdefault(line.name, proxy)  # one legend entry for every method's published markers
            continue
        if line.x:
            style: dict[str, Any] = (
                {"ls": ":", "lw": 1.4, "marker": None}
                if line.kind == "chance"
                else {"ls": "-", "lw": 1.6, "marker": _MARKERS[n % len(_MARKERS)] if len(line.x) <= 20 else None}
            )
            (artist,) = ax.plot(line.x, means, color=color, ms=3.5, label=line.name, **style)
            if any(s > 0 for s in stds):
                ax.fill_between(
                    line.x,
                    [m - s for m, s in zip(means, stds, strict=True)],
                    [m + s for m, s in zip(means, stds, strict=True)],
                    color=color,
                    alpha=0.15,
                    lw=0,
                )
        else:
            artist = _draw_level(ax, line, color)
        handles.setdefault(line.name, artist)
    scale = panel.xscale or spec.xscale
    if scale == "log":
        ax.set_xscale("log")
    elif scale == "symlog":
        positive = [x for line in panel.lines for x in line.x if x > 0]
        ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
        if all(x >= 0 for line in panel.lines for x in line.x):
            ax.set_xlim(left=0)
    if scale != "linear":  # plain numbers (0.001, 100) rather than powers of ten
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v)))
    xs = sorted({x for line in panel.lines if line.kind == "line" for x in line.x})
    if 1 < len(xs) <= 8:  # a sweep's few grid values: tick exactly at them
        ax.set_xticks(xs, [format_value(x) for x in xs])
        ax.minorticks_off()


def _draw_level(ax: Axes, line: Line, color: str) -> Line2D:
    s = line.y[0]
    artist = ax.axhline(s.mean, color=color, lw=1.3, ls=":" if line.kind == "chance" else "--", label=line.name)
    if s.std > 0:
        ax.axhspan(s.mean - s.std, s.mean + s.std, color=color, alpha=0.08, lw=0)
    return artist


def _draw_bars(ax: Axes, panel: Panel, colors: dict[str, str], handles: dict[str, Handle]) -> None:
    n = max(len(panel.bars), 1)
    width = 0.8 / n
    for i, bars in enumerate(panel.bars):
        positions = [g + (i - (n - 1) / 2) * width for g in range(len(panel.groups))]
        means = [math.nan if s is None else s.mean for s in bars.values]
        errs = [0.0 if s is None else s.std for s in bars.values]
        fill = (
            [colors.get(bars.color_key or g, CHANCE_COLOR) for g in panel.groups]
            if bars.color_key is None
            else colors.get(bars.color_key, CHANCE_COLOR)
        )
        # a paper's values: outlines in the label's colour beside the measured bar
        look: dict[str, Any] = (
            {"color": "none", "edgecolor": fill, "hatch": "///", "lw": 1.0} if bars.hollow else {"color": fill}
        )
        container = ax.bar(
            positions,
            means,
            width * 0.92,
            yerr=errs if any(errs) else None,
            capsize=2,
            error_kw={"lw": 0.8, "ecolor": "#333333"},
            label=bars.name,
            **look,
        )
        if bars.color_key is not None or bars.hollow:
            handles.setdefault(bars.name, container)
    for line in panel.lines:
        handles.setdefault(line.name, _draw_level(ax, line, colors.get(line.color_key, CHANCE_COLOR)))
    ax.set_xticks(range(len(panel.groups)), panel.groups)
    long = max((len(g) for g in panel.groups), default=0) * len(panel.groups) > 40
    if long:
        ax.tick_params(axis="x", labelrotation=25)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    ax.set_xlim(-0.6, len(panel.groups) - 0.4)


def _style(ax: Axes, panel: Panel, spec: FigureSpec, *, first_col: bool, bottom: bool) -> None:
    ax.set_title(panel.title, fontsize=9)
    ax.grid(True, alpha=0.3, lw=0.6)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)
    if first_col:
        ax.set_ylabel(spec.ylabel, fontsize=9)
    if bottom and spec.xlabel:
        ax.set_xlabel(spec.xlabel, fontsize=9)
    if spec.unit_interval:
        low, high = ax.get_ylim()
        ax.set_ylim(min(0.0, low), max(1.02, min(high, 1.05)))


def render(fig: Figure, formats: Sequence[str] = FORMATS) -> dict[str, bytes]:
    """The figure's bytes per format (``png`` at ``PNG_DPI``, ``svg``), without timestamps so reruns match."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown figure format(s) {unknown}; allowed: {', '.join(FORMATS)}")
    out = {}
    with matplotlib.rc_context({"svg.hashsalt": "dictlab"}):
        for fmt in formats:
            buffer = io.BytesIO()
            metadata = {"Date": None} if fmt == "svg" else {"Software": None}
            fig.savefig(buffer, format=fmt, dpi=PNG_DPI, metadata=metadata)
            out[fmt] = buffer.getvalue()
    return out

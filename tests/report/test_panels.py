"""What each figure shows (panels, lines, bars, references) and that the drawn matplotlib figure plots exactly
those numbers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.container import BarContainer
from PIL import Image

from dictlab.report.aggregate import Stats, grid_columns, subjects_of, sweep_axes
from dictlab.report.figures import draw, render
from dictlab.report.layouts import layout_for
from dictlab.report.panels import bar_figure, curve_figure, sweep_figure


def _sweep_rows() -> list[dict]:
    rows = []
    for k in (2, 3):
        for p in (10, 100, 1000):
            for seed in (0, 1):
                for method, level in (("fista_oracle", 0.9), ("sae_topk", 0.3)):
                    rows.append(
                        {
                            "label": method,
                            "seed": seed,
                            "step": None,
                            "data.num_latents": p,
                            "data.k": k,
                            "mcc_ood": level + 0.01 * k + 0.1 * seed,
                            "mcc_chance_ood": 0.1 * k,
                        }
                    )
    return rows


def test_sweep_figure_lines_are_means_over_seeds_per_facet():
    rows = _sweep_rows()
    axes = sweep_axes(rows, grid_columns(rows))
    spec = sweep_figure(rows, "mcc_ood", axes, "key")
    assert spec is not None and spec.xscale == "log" and spec.unit_interval
    assert [p.title for p in spec.panels] == ["k=2", "k=3"]
    lines = {line.name: line for line in spec.panels[1].lines}
    assert set(lines) == {"fista_oracle", "sae_topk", "chance"}
    assert lines["sae_topk"].x == (10.0, 100.0, 1000.0)
    for s in lines["sae_topk"].y:
        assert s.mean == pytest.approx(0.3 + 0.03 + 0.05) and s.std == pytest.approx(0.1 / np.sqrt(2)) and s.n == 2
    assert lines["chance"].kind == "chance" and all(s.mean == pytest.approx(0.3) for s in lines["chance"].y)
    assert "fista_oracle" in spec.alt and "num_latents" in spec.caption


def test_drawn_sweep_plots_the_means_with_a_band_of_one_std():
    rows = _sweep_rows()
    spec = sweep_figure(rows, "mcc_ood", sweep_axes(rows, grid_columns(rows)), "key")
    fig = draw(spec)
    ax = fig.axes[1]
    by_label = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(by_label["sae_topk"].get_ydata(), [0.38, 0.38, 0.38])
    np.testing.assert_allclose(by_label["sae_topk"].get_xdata(), [10, 100, 1000])
    assert by_label["chance"].get_linestyle() == ":"
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    top = max(v[1] for band in bands for v in band.get_paths()[0].vertices)
    assert top == pytest.approx(0.9 + 0.03 + 0.05 + 0.1 / np.sqrt(2))
    assert ax.get_xscale() == "log" and ax.get_ylim()[0] == 0.0
    png = render(fig, ("png",))["png"]
    assert Image.open(io.BytesIO(png)).size == tuple(round(v) for v in fig.get_size_inches() * 100)


def _frozen_rows() -> list[dict]:
    rows = []
    for p in (20, 40):
        for sae, shift in (("sae_topk", 0.0), ("sae_relu", 0.1)):
            for seed in (0, 1, 2):
                base = {"seed": seed, "step": None, "data.num_latents": p, "params.method": sae}
                rows += [
                    {**base, "label": sae, "mcc_ood": 0.3 + shift + 0.01 * seed},
                    {**base, "label": f"fista+{sae}", "mcc_ood": 0.4 + shift},
                    {**base, "label": "fista_oracle", "mcc_ood": 0.9 + 0.02 * seed},
                ]
    return rows


def test_bar_figure_groups_subjects_bars_arms_and_draws_the_oracle_once_per_seed():
    rows = _frozen_rows()
    spec = bar_figure(rows, "mcc_ood", grid_columns(rows), subjects_of(rows), "key")
    assert spec is not None and [p.title for p in spec.panels] == ["num_latents=20", "num_latents=40"]
    panel = spec.panels[0]
    assert panel.groups == ("sae_topk", "sae_relu")
    bars = {b.name: b for b in panel.bars}
    assert set(bars) == {"own encoder", "fista"}
    assert [s.mean for s in bars["own encoder"].values] == pytest.approx([0.31, 0.41])
    (oracle,) = [line for line in panel.lines if line.name == "fista_oracle"]
    assert oracle.kind == "reference" and oracle.y == (Stats(pytest.approx(0.92), pytest.approx(0.02), 3),)
    fig = draw(spec)
    bar_containers = [c for c in fig.axes[0].containers if isinstance(c, BarContainer)]
    heights = sorted(round(float(patch.get_height()), 6) for c in bar_containers for patch in c.patches)
    assert heights == [0.31, 0.4, 0.41, 0.5]


def test_bar_figure_without_subjects_has_one_bar_per_label():
    rows = [
        {"label": m, "seed": s, "step": None, "auc_ood": v + s} for m, v in (("a", 0.1), ("b", 0.2)) for s in (0, 1)
    ]
    spec = bar_figure(rows, "auc_ood", [], [], "key")
    (panel,) = spec.panels
    assert panel.groups == ("a", "b") and [s.mean for s in panel.bars[0].values] == pytest.approx([0.6, 0.7])


def _warmstart_rows() -> list[dict]:
    rows = []
    for seed in (0, 1):
        base = {"seed": seed, "data.num_latents": 20, "params.method": "sae_topk"}
        rows += [
            {**base, "label": "warm+sae_topk", "step": float(n), "mcc_ood": 0.5 + 0.01 * n} for n in (0, 1, 10, 100)
        ]
        rows += [{**base, "label": "cold+sae_topk", "step": float(n), "mcc_ood": 0.4 + 0.001 * n} for n in (1, 10, 100)]
        rows += [
            {**base, "label": "fista_oracle", "step": 100.0, "mcc_ood": 0.97},
            {**base, "label": "to_tolerance+sae_topk", "step": None, "iters_saved_ood": 10.0},
        ]
    return rows


def test_curve_figure_draws_arms_as_lines_and_single_step_labels_as_references():
    rows = _warmstart_rows()
    spec = curve_figure(
        rows, "mcc_ood", grid_columns(rows), subjects_of(rows), layout_for("surgery.warmstart_encoder"), "key"
    )
    assert spec is not None and spec.xscale == "symlog"
    (panel,) = spec.panels
    kinds = {line.name: line.kind for line in panel.lines}
    assert kinds == {"warm": "line", "cold": "line", "fista_oracle": "reference"}
    warm = next(line for line in panel.lines if line.name == "warm")
    assert warm.x == (0.0, 1.0, 10.0, 100.0) and [s.mean for s in warm.y] == pytest.approx([0.5, 0.51, 0.6, 1.5])
    assert curve_figure(rows, "iters_saved_ood", [], ["sae_topk"], layout_for("surgery.warmstart_encoder"), "k") is None


def test_learning_dynamics_panels_per_label_with_their_own_x_axis():
    rows = [
        {
            "label": m,
            "seed": 0,
            "step": float(i * scale),
            "data.num_latents": p,
            "params.method": m,
            "mean_cosine": 0.1 * i + p / 1000,
        }
        for m, scale in (("sae_topk", 1000), ("dl_fista", 10))
        for p in (20, 40)
        for i in (1, 2, 3)
    ]
    spec = curve_figure(
        rows, "mean_cosine", grid_columns(rows), subjects_of(rows), layout_for("surgery.learning_dynamics"), "key"
    )
    assert [p.title for p in spec.panels] == ["sae_topk", "dl_fista"]
    assert [line.name for line in spec.panels[0].lines] == ["num_latents=20", "num_latents=40"]
    assert spec.panels[1].lines[0].x == (10.0, 20.0, 30.0)
    fig = draw(spec)
    assert fig.axes[0].get_xlim()[1] > 2000 and fig.axes[1].get_xlim()[1] < 40  # not one shared step axis

"""Aggregation laws of the report: mean ± std over seeds, the grid of an experiment, label decomposition,
axis scales and number formatting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dictlab.report.aggregate import (
    Stats,
    grid_columns,
    seed_stats,
    split_label,
    stats,
    subjects_of,
    sweep_axes,
)
from dictlab.report.panels import axis_scale
from dictlab.report.tables import format_cell

finite = st.floats(-1e6, 1e6, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.integers(0, 20), st.lists(finite, min_size=1, max_size=4), min_size=1, max_size=6))
def test_seed_stats_is_mean_and_sample_std_of_per_seed_means(values_by_seed: dict[int, list[float]]):
    rows = [{"seed": seed, "m": v} for seed, values in values_by_seed.items() for v in values]
    per_seed = np.array([np.mean(np.array(v, dtype=np.float64)) for v in values_by_seed.values()])
    got = seed_stats(rows, "m")
    assert got is not None and got.n == len(values_by_seed)
    assert got.mean == pytest.approx(per_seed.mean(), rel=1e-9, abs=1e-6)
    expected_std = per_seed.std(ddof=1) if len(per_seed) > 1 else 0.0
    assert got.std == pytest.approx(expected_std, rel=1e-7, abs=1e-6)


def test_stats_skips_what_is_not_a_finite_number():
    assert stats([1.0, math.nan, None, True, "x", 3.0, math.inf]) == Stats(2.0, math.sqrt(2.0), 2)  # type: ignore[list-item]
    assert stats([]) is None
    assert seed_stats([{"seed": 0, "m": math.nan}], "m") is None


def _row(label: str, p: int, seed: int = 0, **extra: object) -> dict[str, object]:
    return {"label": label, "seed": seed, "data.num_latents": p, "data.k": 3, "params.method": label, **extra}


def test_grid_is_what_varies_within_a_label():
    rows = [_row(label, p, **{"params.overrides.lr": lr}) for label, lr in (("a", 0.1), ("b", 0.2)) for p in (10, 20)]
    # lr differs between labels only (a method's own override); method names the label: neither is a grid axis
    assert grid_columns(rows) == ["data.num_latents"]


def test_sweep_axis_drops_columns_determined_by_x_and_facets_independent_ones():
    dependent = [_row("a", p, **{"data.input_dim": 2 * p}) for p in (10, 20, 40)]
    assert sweep_axes(dependent, grid_columns(dependent)).facets == ()
    assert sweep_axes(dependent, grid_columns(dependent)).x == "data.num_latents"
    crossed = [{**_row("a", p), "data.k": k} for p in (10, 20, 40) for k in (2, 3)]
    axes = sweep_axes(crossed, grid_columns(crossed))
    assert axes.x == "data.num_latents" and axes.facets == ("data.k",)


def test_labels_split_into_arm_and_subject():
    rows = [{"label": "fista+sae_topk", "params.method": "sae_topk"}, {"label": "warm_dl+sae_relu"}]
    subjects = subjects_of(rows)
    assert subjects == ["sae_topk", "sae_relu"]
    assert split_label("fista+sae_topk", subjects) == ("fista", "sae_topk")
    assert split_label("sae_relu", subjects) == ("own encoder", "sae_relu")
    assert split_label("fista_oracle", subjects) == ("fista_oracle", None)


@pytest.mark.parametrize(
    ("values", "scale"),
    [
        ((20, 40, 80), "linear"),
        ((50, 100, 1000, 10000), "log"),
        ((0, 1, 10, 100), "symlog"),
        ((0.001, 0.1, 2.0), "log"),
        ((-1, 10, 1000), "linear"),
    ],
)
def test_axis_scale(values, scale):
    assert axis_scale([float(v) for v in values]) == scale


def test_cells_show_the_spread_in_the_means_format():
    assert format_cell(Stats(0.5523, 4.5e-5, 3)) == "0.552 ± 0.000"
    assert format_cell(Stats(0.5523, 0.0123, 1)) == "0.552"
    assert format_cell(Stats(12345.0, 67.0, 2)) == "12,345 ± 67"
    assert format_cell(None) == "–" and format_cell(0.1) == "0.1" and format_cell(400.0) == "400"

"""Phase-diagram heat maps in the report: a stored sweep over the compressed-sensing grid (what the
``phase-transition`` preset writes) gets a figure whose cells hold the right fractions of runs with
mcc_ood ≥ 0.95; a sweep that does not vary input_dim at a fixed (p, k) gets none."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dictlab.data import input_dim_from_cs_bound
from dictlab.experiments.runs import Record, RunSpec
from dictlab.experiments.store import ResultStore
from dictlab.report import build_report, section_content
from dictlab.report.phase import PhaseFigure, bin_index, draw_phase, is_phase_sweep

from .conftest import VERSIONS, read_page

LATENTS = (50, 100)
KS = (3, 5)
CS = (0.5, 1.0, 2.0, 4.0)
SEEDS = (0, 1, 2)


def mcc(method: str, delta: float, seed: int) -> float:
    """A synthetic mcc_ood: fista_oracle succeeds (≥ 0.95) above δ = 0.3 for seeds 0 and 1 only, sae_topk never."""
    if method == "fista_oracle":
        return 0.97 if delta > 0.3 and seed < 2 else 0.9
    return 0.5 + 0.1 * delta


def points() -> list[tuple[int, int, int]]:
    return [(p, k, input_dim_from_cs_bound(p, k, c)) for p in LATENTS for k in KS for c in CS]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs as a sweep of the preset stores them: cs_constant resolved into input_dim by the canonical spec."""
    path = tmp_path_factory.mktemp("phase") / "results.sqlite"
    with ResultStore(path) as results:
        for p, k, m in points():
            for method in ("fista_oracle", "sae_topk"):
                for seed in SEEDS:
                    data = {"generator": "compositional", "num_latents": p, "k": k, "input_dim": m, "n_samples": 200}
                    spec = RunSpec(
                        experiment="phase-transition",
                        task="method",
                        data=data,
                        seed=seed,
                        params={"method": method, "overrides": {}, "recipe": "dictlab"},
                    )
                    value = mcc(method, m / p, seed)
                    results.finish(spec, [Record(method, {"mcc_ood": value, "mcc_id": value})], {}, VERSIONS)
    return path


def cells_of(method: str) -> dict[tuple[int, int], list[float]]:
    """(ρ cell, δ cell) → the synthetic mcc_ood of every run in it."""
    cells: dict[tuple[int, int], list[float]] = {}
    for p, k, m in points():
        for seed in SEEDS:
            cells.setdefault((bin_index(k / m), bin_index(m / p)), []).append(mcc(method, m / p, seed))
    return cells


def test_phase_figure_cells_hold_the_fractions_of_successful_runs(store: Path):
    with ResultStore(store, readonly=True) as results:
        rows = results.records()
    content = section_content("phase-transition", "method", rows)
    phase = [f for f in content.figures if isinstance(f, PhaseFigure)]
    assert [f.key for f in phase] == [
        "phase-transition-method-phase-success-mcc_ood",
        "phase-transition-method-phase-mean-mcc_ood",
    ]
    success = phase[0]
    assert [panel.title.split(" ")[0] for panel in success.panels] == ["fista_oracle", "sae_topk"]
    assert "mcc_ood ≥ 0.95" in success.colorbar_label and "mcc_ood ≥ 0.95" in success.caption
    for panel, method in zip(success.panels, ("fista_oracle", "sae_topk"), strict=True):
        expected = cells_of(method)
        for i in range(10):
            for j in range(10):
                value, count = panel.values[i][j], panel.counts[i][j]
                if (i, j) in expected:
                    runs = expected[(i, j)]
                    assert count == len(runs)
                    assert value == pytest.approx(sum(v >= 0.95 for v in runs) / len(runs), abs=1e-12)
                else:
                    assert count == 0 and math.isnan(value)
        assert sum(map(sum, panel.counts)) == len(points()) * len(SEEDS)
    # some cell holds a fraction strictly between 0 and 1 (2 of 3 seeds succeed there)
    assert any(0 < v < 1 for row in success.panels[0].values for v in row if not math.isnan(v))
    # the second figure: the mean mcc_ood per cell
    for (i, j), runs in cells_of("sae_topk").items():
        assert phase[1].panels[1].values[i][j] == pytest.approx(sum(runs) / len(runs), abs=1e-12)


def test_report_page_shows_the_phase_figures(store: Path, tmp_path: Path):
    page = build_report(store, tmp_path / "report", formats=("png",))
    figures = [attrs["id"] for tag, attrs in read_page(page).tags if tag == "figure"]
    assert "phase-transition-method-phase-success-mcc_ood" in figures
    assert (tmp_path / "report" / "figures" / "phase-transition-method-phase-success-mcc_ood.png").is_file()


def test_drawing_has_labels_colour_bar_and_curves(store: Path):
    with ResultStore(store, readonly=True) as results:
        rows = results.records()
    spec = next(f for f in section_content("phase-transition", "method", rows).figures if isinstance(f, PhaseFigure))
    fig = draw_phase(spec)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    panels = [ax for ax in axes if ax.get_xlabel() or ax.get_title()]
    assert panels[0].get_xlabel() == "δ = m/p (measurements / latents)" and panels[0].get_ylabel() == "ρ = k/m"
    assert any("0.95" in ax.get_ylabel() for ax in axes)  # the colour bar names the criterion
    assert len(panels[0].get_lines()) == 2  # ℓ1 curves: non-negative (solid) and signed (dashed)


def test_rule_for_drawing_a_phase_figure():
    base = {"data.num_latents": 100, "data.k": 5, "step": None, "mcc_ood": 0.9, "label": "x"}
    swept = [{**base, "data.input_dim": m} for m in (20, 40)]
    grid = ["data.input_dim"]
    assert is_phase_sweep(swept, grid)
    # input_dim follows num_latents (one input_dim per (p, k)): a plain sweep, no phase figure
    along = [{**base, "data.num_latents": p, "data.input_dim": m} for p, m in ((50, 20), (100, 30))]
    assert not is_phase_sweep(along, ["data.num_latents", "data.input_dim"])
    assert not is_phase_sweep(swept, ["data.num_latents"])  # input_dim not a grid column
    assert not is_phase_sweep([{**r, "data.k": None} for r in swept], grid)

"""build_report end to end on a synthetic store: files, a self-contained page, one figure per metric,
tables with the right means, run counts and failures, and errors for bad input."""

from __future__ import annotations

import base64
import re
import statistics
from pathlib import Path

import pytest

from dictlab.experiments.store import ResultStore
from dictlab.report import build_report
from dictlab.report.html import png_size

from .conftest import EXPECTED_FIGURES, LATENTS, SEEDS, SWEEP_METHODS, fill_store, read_page, sweep_value


@pytest.fixture(scope="module")
def page(store_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(store_path, tmp_path_factory.mktemp("report"), formats=("png", "svg"))


TASK_SLUGS = {
    "sweep": "method",
    "frozen": "surgery-frozen_decoder",
    "dynamics": "surgery-learning_dynamics",
    "warmstart": "surgery-warmstart_encoder",
}


def _mean_std(values: list[float]) -> str:
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def test_page_and_figure_files_are_written(page: Path):
    assert page.name == "index.html" and page.is_file()
    figures = page.parent / "figures"
    expected = sum(len(m) for m in EXPECTED_FIGURES.values())
    assert len(list(figures.glob("*.png"))) == expected
    assert len(list(figures.glob("*.svg"))) == expected
    for svg in figures.glob("*.svg"):
        assert svg.read_text().lstrip().startswith("<?xml") and "</svg>" in svg.read_text()


def test_page_is_self_contained(page: Path):
    text = page.read_text(encoding="utf-8")
    reader = read_page(page)
    assert not re.search(r"https?://", text), "the page must not reference the network"
    for tag, attrs in reader.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:", "#")), f"<{tag} {name}={value[:40]!r}> points outside the page"
        assert tag not in ("script", "link", "iframe", "object")
    images = [attrs for tag, attrs in reader.tags if tag == "img"]
    assert images and all(a["src"].startswith("data:image/png;base64,") for a in images)
    for attrs in images:
        data = base64.b64decode(attrs["src"].split(",", 1)[1])
        assert png_size(data) == (int(attrs["width"]), int(attrs["height"]))
        assert attrs["alt"].strip(), "every figure needs alt text"


def test_one_figure_per_expected_metric_with_caption(page: Path):
    reader = read_page(page)
    figures = [attrs["id"] for tag, attrs in reader.tags if tag == "figure"]
    expected = {
        f"{experiment}-{TASK_SLUGS[experiment]}-{metric}"
        for experiment, metrics in EXPECTED_FIGURES.items()
        for metric in metrics
    }
    assert sorted(figures) == sorted(expected)
    assert len(reader.figcaptions) == len(figures)
    assert all(re.match(r"Figure \d+\. ", c) and "seeds" in c for c in reader.figcaptions)


def test_sweep_tables_hold_mean_and_std_over_seeds(page: Path):
    tables = read_page(page).tables
    pivot = tables["sweep-method-pivot-mcc_ood"]
    header, body = pivot[0], pivot[1:]
    assert header == ["label", *(f"num_latents={p}" for p in LATENTS)]
    assert [row[0] for row in body] == list(SWEEP_METHODS)
    for row in body:
        for p, cell in zip(LATENTS, row[1:], strict=True):
            assert cell == _mean_std([sweep_value(row[0], p, s) for s in SEEDS])
    summary = tables["sweep-method-summary"]
    column = summary[0].index("MCC (ID)")
    header = summary[0]
    assert header[:3] == ["num_latents", "input_dim", "num_ood"]  # the canonical data: derived sizes explicit
    for row in summary[1:]:
        p, label = int(row[header.index("num_latents")]), row[header.index("label")]
        assert row[summary[0].index("seeds")] == "3"
        assert row[column] == _mean_std([sweep_value(label, p, s) + 0.05 for s in SEEDS])


def test_reference_counts_once_per_seed_in_surgery_tables(page: Path):
    table = read_page(page).tables["frozen-surgery-frozen_decoder-summary"]
    column, label = table[0].index("MCC (OOD)"), table[0].index("label")
    assert "num_latents" not in table[0]  # one grid point: no grid column
    oracle = [row for row in table[1:] if row[label] == "fista_oracle"]
    # recomputed in both SAEs' runs of a seed: the std is over the 3 seeds, not over 6 runs
    assert [row[column] for row in oracle] == ["0.960 ± 0.010"]
    fista_relu = [row for row in table[1:] if row[label] == "fista+sae_relu"]
    assert [row[column] for row in fista_relu] == [_mean_std([0.45, 0.46, 0.47])]


def test_curves_are_summarised_at_their_last_step(page: Path):
    table = read_page(page).tables["dynamics-surgery-learning_dynamics-summary"]
    head = table[0]
    rows = {row[head.index("label")]: row for row in table[1:]}
    assert rows["sae_topk"][head.index("step")] == "400" and rows["dl_fista"][head.index("step")] == "40"
    assert rows["dl_fista"][head.index("matched dictionary cosine (training log)")] == _mean_std([0.8, 0.81, 0.82])


def test_run_counts_and_failed_runs(page: Path):
    tables = read_page(page).tables
    runs = {row[0]: row for row in tables["runs"][1:]}
    assert runs["sweep"][2:] == [str(len(LATENTS) * len(SWEEP_METHODS) * len(SEEDS)), "1", "0"]
    assert runs["frozen"][2:] == ["6", "0", "0"]
    failed = tables["runs-not-done"]
    assert len(failed) == 2 and "RuntimeError: synthetic failure" in failed[1][-1] and failed[1][6] == "failed"
    text = page.read_text(encoding="utf-8")
    assert "<dt>runs</dt><dd>" in text and "dictlab" in text


def test_experiment_filter_and_rows_input_give_the_same_section(store_path: Path, tmp_path: Path):
    with ResultStore(store_path) as store:
        rows = store.records(experiment="frozen")
    from_store = read_page(build_report(store_path, tmp_path / "a", experiment="frozen", formats=("png",)))
    from_rows = read_page(build_report(rows, tmp_path / "b", formats=("png",)))
    key = "frozen-surgery-frozen_decoder-summary"
    assert from_store.tables[key] == from_rows.tables[key]
    assert [a["id"] for t, a in from_store.tags if t == "figure"] == [
        a["id"] for t, a in from_rows.tags if t == "figure"
    ]
    assert not any(k.startswith("sweep") for k in from_store.tables)
    assert from_rows.tables["runs"][1][3:] == ["–", "–"]  # rows alone cannot know about failures


def test_svg_only_is_inlined(store_path: Path, tmp_path: Path):
    page = build_report(store_path, tmp_path, experiment="warmstart", formats=("svg",))
    text = page.read_text(encoding="utf-8")
    assert "<img" not in text
    assert text.count("<svg") == len(EXPECTED_FIGURES["warmstart"])
    assert not list((tmp_path / "figures").glob("*.png"))


def test_bad_input_is_refused_with_a_message(store_path: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="no results store"):
        build_report(tmp_path / "missing.sqlite", tmp_path / "out")
    assert not (tmp_path / "missing.sqlite").exists()
    with pytest.raises(ValueError, match="formats"):
        build_report(store_path, tmp_path / "out", formats=("jpg",))
    with pytest.raises(ValueError, match="no records of experiment 'nope'"):
        build_report(store_path, tmp_path / "out", experiment="nope")
    with pytest.raises(ValueError, match="store path, a ResultStore or a list"):
        build_report(42, tmp_path / "out")  # type: ignore[arg-type]


def test_missing_metrics_are_skipped_not_fatal(tmp_path: Path):
    path = fill_store(tmp_path / "s.sqlite")
    with ResultStore(path) as store:
        rows = [
            {k: v for k, v in r.items() if k not in ("acc_ood", "auc_ood")} for r in store.records(experiment="sweep")
        ]
    reader = read_page(build_report(rows, tmp_path / "out", formats=("png",)))
    assert sorted(a["id"] for t, a in reader.tags if t == "figure") == ["sweep-method-mcc_id", "sweep-method-mcc_ood"]

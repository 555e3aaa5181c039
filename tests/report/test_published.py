"""Published numbers (seed 004's tables) drawn and tabulated beside the measured ones."""

from __future__ import annotations

from matplotlib.container import BarContainer

from dictlab.report.build import section_content
from dictlab.report.figures import draw
from dictlab.report.published import PUBLISHED, TABLE_1, published_for
from dictlab.report.tables import format_cell


def _rows(experiment: str, x_field: str | None, xs: tuple[float | None, ...]) -> list[dict]:
    rows = []
    for x in xs:
        for seed in (0, 1):
            for label, level in (("sae_topk", 0.8), ("sae_topk_fa", 0.9), ("sae_relu", 0.0)):
                row = {
                    "experiment": experiment,
                    "task": "method",
                    "label": label,
                    "seed": seed,
                    "step": None,
                    "params.method": label.removesuffix("_fa"),
                    "gt_recovery_encoder_90": level + 0.01 * seed,
                    "mip_encoder": 0.5 + 0.1 * seed,
                }
                if label.endswith("_fa"):
                    row["params.label"] = label
                if x_field is not None:
                    row[x_field] = x
                rows.append(row)
    return rows


def test_every_published_number_is_a_label_and_metric_the_report_draws():
    for experiment, published in PUBLISHED.items():
        assert published_for(experiment) is published
        for value in published.values:
            assert value.metric in ("gt_recovery_encoder_90", "mip_encoder")
            assert 0.0 <= value.value <= 1.0
            assert (value.x is None) == (published.x_field is None), (experiment, value)
    # Table 6's S = 0.01 row is Table 1 (the paper's S there is the active probability): both give TopK 84.9 %
    sparsity = {(v.label, v.x): v.value for v in PUBLISHED["lrb-sparsity"].for_metric("gt_recovery_encoder_90")}
    assert sparsity[("sae_topk", 0.99)] == TABLE_1["sae_topk"][0] == 0.849
    assert sparsity[("sae_topk", 0.9)] == 0.988


def test_an_ablation_draws_the_papers_values_as_hollow_markers_at_their_x():
    rows = _rows("lrb-interference", "data.max_interference", (0.05, 0.1))
    content = section_content("lrb-interference", "method", rows)
    figure = next(f for f in content.figures if getattr(f, "metric", None) == "gt_recovery_encoder_90")
    (panel,) = figure.panels
    published = {line.color_key: line for line in panel.lines if line.kind == "published"}
    assert set(published) == {"sae_topk", "sae_topk_fa", "sae_relu"}
    # the published series hold the paper's values at the swept values the runs have (0.05: Table 5, 0.1: Table 1)
    topk = published["sae_topk"]
    assert topk.x[:2] == (0.05, 0.1) and [s.mean for s in topk.y][:2] == [0.843, 0.849]
    assert "Hollow: the published value" in figure.caption
    fig = draw(figure)
    hollow = [
        artist
        for artist in fig.axes[0].lines
        if artist.get_linestyle() == "None" and artist.get_markerfacecolor() == "none"
    ]
    assert len(hollow) == 3
    assert 0.843 in hollow[0].get_ydata() or any(0.843 in a.get_ydata() for a in hollow)


def test_table_1_is_a_hollow_bar_beside_each_measured_bar_and_a_side_by_side_table():
    rows = _rows("lrb-table1", None, (None,))
    content = section_content("lrb-table1", "method", rows)
    figure = next(f for f in content.figures if getattr(f, "metric", None) == "gt_recovery_encoder_90")
    (panel,) = figure.panels
    measured, paper = panel.bars
    assert paper.hollow and not measured.hollow
    assert [None if s is None else s.mean for s in paper.values] == [0.849, 0.8763, 0.0]
    containers = [c for c in draw(figure).axes[0].containers if isinstance(c, BarContainer)]
    assert len(containers) == 2
    table = next(t for t in content.tables if t.key.endswith("-published"))
    by_label = {row[0]: row for row in table.rows}
    assert set(by_label) == set(TABLE_1)  # every published row, measured or not
    topk = by_label["sae_topk"]
    assert topk[2] == 0.849 and format_cell(topk[3]) == "0.805 ± 0.007"  # published, then measured (2 seeds)
    assert by_label["sae_crosscoder"][3] is None  # not run here: "–"


def test_experiments_without_published_numbers_get_neither():
    rows = _rows("my-sweep", "data.max_interference", (0.05, 0.1))
    content = section_content("my-sweep", "method", rows)
    assert not any(t.key.endswith("-published") for t in content.tables)
    assert not any(line.kind == "published" for f in content.figures for p in f.panels for line in p.lines)

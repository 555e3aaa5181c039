"""``dictlab phase-diagram``: a tiny grid end to end (PNG + JSON whose numbers are the diagram's), and one-line
errors naming the flag before anything is written."""

from __future__ import annotations

import json

import pytest

from dictlab.cli import main
from dictlab.report.html import png_size


def test_tiny_phase_diagram_writes_png_and_json(tmp_path, capsys):
    out = tmp_path / "pd"
    code = main(
        [
            "phase-diagram",
            "--solvers",
            "omp,mp",
            "--p",
            "24",
            "--trials",
            "4",
            "--grid",
            "3",
            "--seed",
            "1",
            "--out",
            str(out),
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0
    png, js = out / "phase_diagram.png", out / "phase_diagram.json"
    assert png_size(png.read_bytes())[0] > 300
    data = json.loads(js.read_text())
    assert [d["solver"] for d in data["diagrams"]] == ["omp", "mp"]
    for diagram in data["diagrams"]:
        assert diagram["p"] == 24 and diagram["trials"] == 4 and diagram["nonneg"] is True
        assert diagram["deltas"] == pytest.approx([1 / 6, 1 / 2, 5 / 6]) and diagram["input_dims"] == [4, 12, 20]
        success = diagram["success"]
        assert len(success) == 3 and all(len(row) == 3 for row in success)
        assert all(v * 4 == round(v * 4) for row in success for v in row)  # fractions of 4 trials
        line = next(x for x in stdout.splitlines() if x.strip().startswith(diagram["solver"]))
        assert f"{diagram['mean_abs_contour_distance']:.3f}" in line
    assert str(png) in stdout and str(js) in stdout


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--p", "1"], "--p: must be >= 2, got 1"),
        (["--trials", "0"], "--trials: must be >= 1, got 0"),
        (["--grid", "0"], "--grid: must be >= 1, got 0"),
        (["--solvers", "fista,lasso"], "--solvers: unknown solver 'lasso'; allowed: fista, mp, omp"),
        (["--solvers", ","], "--solvers: ',' names no solver; allowed: fista, mp, omp"),
        (["--tol", "0"], "--tol: must be a finite number > 0, got 0.0"),
        (["--threads", "0"], "--threads: must be >= 1, got 0"),
        (["--p", "x"], "argument --p: invalid int value: 'x'"),
    ],
)
def test_bad_arguments_fail_in_one_line_naming_the_flag(argv, expected, tmp_path, capsys):
    code = main(["phase-diagram", *argv, "--out", str(tmp_path / "pd")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("dictlab phase-diagram: error: ") and expected in err
    assert list(tmp_path.iterdir()) == []


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("x")
    assert main(["phase-diagram", "--p", "10", "--grid", "1", "--trials", "1", "--out", str(target)]) == 2
    assert "--out: " in capsys.readouterr().err and target.read_text() == "x"

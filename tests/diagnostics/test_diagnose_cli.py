"""`dictlab diagnose`: the table and JSON of a saved model against its reference rows, numbers equal to the
functions' own, absorption when the data carry a hierarchy, and one-line errors before anything is written."""

from __future__ import annotations

import json

import pytest
import torch

from dictlab.cli import main
from dictlab.data import make_dataset
from dictlab.diagnostics import diagnose, sparse_codes
from dictlab.models import SparseCodingModel, save_model

TABLE = {"generator": "compositional", "num_latents": 30, "k": 3, "n_samples": 200}
DATA = ["--data", "num_latents=30", "--data", "k=3", "--data", "n_samples=200"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A FISTA model on a perturbed true dictionary with one exactly antipodal atom added (atom 30 = −atom 0)."""
    data = make_dataset(TABLE, seed=0)
    gen = torch.Generator().manual_seed(5)
    d = data.dictionary + 0.2 * torch.randn(data.dictionary.shape, generator=gen)
    d = torch.cat([d, -d[:1]])
    folder = tmp_path_factory.mktemp("model")
    model = SparseCodingModel(d, offset=0.01 * torch.ones(d.shape[1]))
    save_model(model, folder)
    return folder, model, data


def test_diagnose_prints_the_table_and_writes_the_functions_numbers(saved, tmp_path, capsys):
    folder, model, data = saved
    out = tmp_path / "d.json"
    assert main(["diagnose", str(folder), *DATA, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    labels = [line.split()[0] for line in printed[2:5]]
    assert labels == ["model", "true", "random"]
    assert printed[-1] == f"wrote {out}"
    report = json.loads(out.read_text())
    assert list(report["rows"]) == ["model", "true + FISTA", "random + FISTA"]
    assert report["split"] == "train" and report["samples"] == len(data.train) and report["hierarchy"] is False
    row = report["rows"]["model"]
    split = data.train
    codes = sparse_codes(model.encode, len(split), y=split.y)
    expected = diagnose(
        split.y, codes, model.dictionary, offset=model.offset, true_dictionary=data.dictionary, true_codes=split.codes
    )
    assert row["stationarity"]["residual"] == pytest.approx(expected["stationarity"]["residual"], rel=1e-6)
    assert row["kkt"]["lam"] == pytest.approx(expected["kkt"]["lam"], rel=1e-6)
    assert row["antipodal_pairs"]["pairs"][0][:2] == [0, 30]
    assert row["antipodal_pairs"]["pairs"][0][2] == pytest.approx(-1.0, abs=1e-6)
    assert len(row["stationarity"]["per_atom_residual"]) == 31
    assert row["absorption"] is None
    # the true dictionary's FISTA codes nearly satisfy the Lasso conditions: their lam is FISTA's 0.1
    assert report["rows"]["true + FISTA"]["kkt"]["lam"] == pytest.approx(0.1, rel=0.05)
    assert report["rows"]["true + FISTA"]["splitting"]["covered_features"] == 30


def test_diagnose_measures_absorption_when_the_data_have_a_hierarchy(tmp_path, capsys):
    fields = {
        "num_parents": 4,
        "children_per_parent": 2,
        "num_roots_free": 4,
        "k_parents": 2,
        "k_free": 1,
        "n_samples": 200,
    }
    data = make_dataset({"generator": "hierarchical", **fields}, seed=1)
    parent = data.hierarchy.parent
    # Thm 3.10's absorbing dictionary: every child's atom is normalise(child + parent)
    d = data.dictionary.clone()
    children = (parent >= 0).nonzero().squeeze(1)
    d[children] = torch.nn.functional.normalize(d[children] + d[parent[children]], dim=1)
    model = SparseCodingModel(d)
    save_model(model, tmp_path / "model")
    out = tmp_path / "d.json"
    argv = ["diagnose", str(tmp_path / "model"), "--generator", "hierarchical", "--seed", "1", "--split", "id"]
    for name, value in fields.items():
        argv += ["--data", f"{name}={value}"]
    assert main([*argv, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["hierarchy"] is True and report["split"] == "id"
    split = data["id"]
    codes = sparse_codes(model.encode, len(split), y=split.y)
    expected = diagnose(
        split.y, codes, model.dictionary, true_dictionary=data.dictionary, true_codes=split.codes, parent=parent
    )
    absorbed = report["rows"]["model"]["absorption"]
    assert [p["parent"] for p in absorbed["per_parent"]] == [0, 1, 2, 3]
    assert absorbed["overall"] == pytest.approx(expected["absorption"]["overall"])
    assert report["rows"]["true + FISTA"]["absorption"]["parents"] == 4
    rows = {line.split()[0]: line.split()[-1] for line in capsys.readouterr().out.splitlines()[2:5]}
    assert rows["model"] == f"{absorbed['overall']:.3f}"  # the absorbed column


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["{empty}"], "MODEL_DIR: {empty} holds none of the model files config.json (dictlab)"),
        (["{missing}"], "MODEL_DIR: {missing} is not a folder"),
        (["{narrow}"], "MODEL_DIR: the model takes inputs of dimension 10, the compositional data have input_dim=14"),
        (
            ["{model}", "--split", "val"],
            "--split: this compositional dataset has no split 'val'; it has train, id, ood",
        ),
        (["{model}", "--data", "num_latent=3"], "unknown field 'num_latent'"),
        (["{model}", "--seed", "-1"], "--seed: must be >= 0, got -1"),
        (["{model}", "--threads", "0"], "--threads: must be >= 1, got 0"),
    ],
)
def test_bad_input_fails_in_one_line_and_writes_nothing(saved, tmp_path, capsys, argv, expected):
    folder, _, _ = saved
    (tmp_path / "empty").mkdir()
    narrow = tmp_path / "narrow"
    save_model(SparseCodingModel(torch.randn(5, 10)), narrow)
    names = {"empty": tmp_path / "empty", "missing": tmp_path / "missing", "narrow": narrow, "model": folder}
    argv = [a.format(**names) for a in argv]
    out = tmp_path / "out.json"
    code = main(["diagnose", *argv, *(DATA if "--data" not in argv else []), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("dictlab diagnose: error: ")
    assert expected.format(**names) in err
    assert not out.exists()

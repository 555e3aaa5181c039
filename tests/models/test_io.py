"""Models on disk: the format registry, and a malformed config.json refused in one line naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dictlab.inference import FistaSolver
from dictlab.models import MODEL_FORMATS, ModelFormat, SparseCodingModel, load_model, save_model


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    d = torch.nn.functional.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    return save_model(SparseCodingModel(d, FistaSolver(lam=0.05)), tmp_path / "model")


def _edit(folder: Path, **changes: object) -> None:
    path = folder / "config.json"
    header = json.loads(path.read_text())
    for key, value in changes.items():
        if key == "solver":
            header["config"]["solver"] = value
        else:
            header[key] = value
    path.write_text(json.dumps(header))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": ["sparse_coding"]}, "'kind' must be a string naming a model kind, got list"),
        ({"kind": "nope"}, "unknown model kind 'nope'; allowed: "),
        ({"solver": "fista"}, "a solver config must be a table with a 'name'"),
        ({"solver": {"name": "fista", "lam": "x"}}, "solver fista: lam='x': Input should be a valid number"),
        ({"solver": {"name": "fista", "lam": float("inf")}}, "solver fista: lam=inf: Input should be a finite number"),
        ({"solver": {"name": "fista", "lamb": 0.1}}, "solver fista: unknown field 'lamb'; allowed: lam"),
        ({"solver": {"lam": 0.1}}, "a solver config needs a 'name'"),
        ({"config": [1, 2]}, "'config' must be a JSON object, got list"),
    ],
)
def test_a_malformed_config_is_refused_in_one_line(saved, changes, message):
    _edit(saved, **changes)
    with pytest.raises(ValueError) as caught:
        load_model(saved)
    text = str(caught.value)
    assert message in text and len(text.splitlines()) == 1, text


def test_a_folder_of_no_known_format_lists_the_formats(tmp_path):
    with pytest.raises(
        ValueError, match=r"holds none of the model files config.json \(dictlab\), .*cfg.json \(saelens\)"
    ):
        load_model(tmp_path)


def test_a_registered_format_is_found_by_its_file(tmp_path, saved):
    """A package adds a format by registering it: load_model then recognises its folders."""
    if "test.renamed" not in MODEL_FORMATS:

        def load_renamed(folder: Path, device: torch.device | str) -> SparseCodingModel:
            return load_model(folder / "inner", device)  # type: ignore[return-value]

        MODEL_FORMATS.register("test.renamed")(ModelFormat("test.renamed", "renamed.json", load_renamed))
    folder = tmp_path / "wrapped"
    (folder / "inner").mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (folder / "inner" / name).write_bytes((saved / name).read_bytes())
    (folder / "renamed.json").write_text("{}")
    assert torch.equal(load_model(folder).dictionary, load_model(saved).dictionary)

"""The README's Python snippet runs as written (so the documented API is the real one)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_the_python_api_snippet_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has a Python snippet"
    monkeypatch.chdir(tmp_path)  # it saves a model folder
    exec(compile(blocks[0], "README.md", "exec"), {})  # our own documentation
    printed = [float(x) for x in capsys.readouterr().out.split()]
    assert len(printed) == 3 and all(0.0 <= x <= 1.0 for x in printed)
    assert (tmp_path / "topk-sae" / "cfg.json").is_file()


@pytest.mark.slow
def test_the_scikit_learn_snippet_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2, "the README has a scikit-learn snippet"
    scope: dict = {}
    exec(compile(blocks[1], "README.md", "exec"), scope)
    accuracy, *shape = capsys.readouterr().out.replace("(", " ").replace(")", " ").replace(",", " ").split()
    assert float(accuracy) > 0.9 and [int(x) for x in shape] == [100, int(scope["train"].y.shape[1])]
    assert scope["ksvd"].components_.shape == (100, scope["train"].y.shape[1])

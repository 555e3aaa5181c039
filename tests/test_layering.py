"""The import graph: every package imports only packages below it (so there are no circles across packages),
and the pure layers — configs, run records, the results store — load without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import dictlab

SOURCE = Path(dictlab.__file__).parent

# Lowest first; a package may import its own modules and any package of a lower layer, never one of its own
# layer or above. docs/architecture.md draws the same picture.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("dictlab", "registry", "config", "validation"),
    ("data", "inference"),
    ("metrics",),
    ("models", "theory", "diagnostics"),
    ("learners", "sae", "baselines"),
    ("methods",),
    ("experiments", "estimators"),
    ("surgery", "report"),
    ("report_table",),
    ("cli",),
)
LAYER = {package: level for level, packages in enumerate(LAYERS) for package in packages}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "dictlab"


def _imports() -> list[tuple[str, str, int]]:
    """(importing module, imported dictlab module, line) for every import statement, lazy ones included."""
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        module = ".".join(("dictlab", *path.relative_to(SOURCE).with_suffix("").parts)).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found += [(module, name, node.lineno) for name in names if name == "dictlab" or name.startswith("dictlab.")]
    return found


def test_every_package_has_a_layer():
    packages = {_package(module) for module, _, _ in _imports()} | {_package(target) for _, target, _ in _imports()}
    assert packages <= set(LAYER), f"packages without a layer: {sorted(packages - set(LAYER))}"


def test_no_package_imports_its_own_layer_or_above():
    upward = [
        f"{module}:{line} imports {target}"
        for module, target, line in _imports()
        if _package(module) != _package(target) and LAYER[_package(target)] >= LAYER[_package(module)]
    ]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


@pytest.mark.parametrize(
    "module",
    [
        "dictlab.config",
        "dictlab.registry",
        "dictlab.experiments",
        "dictlab.experiments.runs",
        "dictlab.experiments.store",
        "dictlab.experiments.summary",
    ],
)
def test_pure_modules_load_without_torch(module):
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'numpy', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"importing {module} loads {out.stdout.strip()}"


def test_listing_a_store_does_not_load_torch(tmp_path):
    from dictlab.experiments.store import ResultStore

    ResultStore(tmp_path / "r.sqlite").close()
    code = (
        "import sys; from dictlab.cli import main; "
        f"code = main(['runs', '--store', {str(tmp_path / 'r.sqlite')!r}]); print('torch' in sys.modules, code)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False 0"

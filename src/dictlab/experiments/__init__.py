"""Running methods on data: the evaluation protocol, runs and tasks, specs, the one runner and the store.

The names below load on first use, so that ``import dictlab.experiments.store`` (what ``dictlab runs`` and the
report need) does not import torch and every model.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RunResult": "dictlab.experiments.method_task",
    "fit_method": "dictlab.experiments.method_task",
    "run_method": "dictlab.experiments.method_task",
    "encode_splits": "dictlab.experiments.evaluate",
    "score_codes": "dictlab.experiments.evaluate",
    "SCORES": "dictlab.experiments.evaluate",
    "register_score": "dictlab.experiments.evaluate",
    "Record": "dictlab.experiments.runs",
    "RunSpec": "dictlab.experiments.runs",
    "ResultStore": "dictlab.experiments.store",
    "ExperimentSpec": "dictlab.experiments.spec",
    "run_sweep": "dictlab.experiments.sweep",
    "summarise": "dictlab.experiments.summary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dictlab.experiments' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)

"""Terminal output of a run: one progress line per finished run and the method × metric summary table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

# (metric key, column header)
COLUMNS = [
    ("mcc_id", "MCC id"),
    ("mcc_ood", "MCC ood"),
    ("mcc_chance_ood", "chance ood"),
    ("acc_id", "acc id"),
    ("acc_ood", "acc ood"),
    ("auc_id", "AUC id"),
    ("auc_ood", "AUC ood"),
    ("dict_mean_cosine", "dict cos"),
    ("total_s", "time s"),
]
STUDY_COLUMNS = [("mcc_study_id", "study MCC id"), ("mcc_study_ood", "study MCC ood")]


def _cell(stats: dict[str, float] | None, key: str) -> str:
    if stats is None:
        return "-"
    digits = 1 if key.endswith("_s") else 3
    text = f"{stats['mean']:.{digits}f}"
    if stats["n"] > 1:
        text += f" ± {stats['std']:.{digits}f}"
    return text


def print_summary(summary: dict[str, dict[str, dict[str, float]]], methods: list[str], *, title: str, study_metrics: bool) -> None:
    """Mean ± std over seeds for each method (rows, in the order run) and metric (columns)."""
    columns = COLUMNS[:3] + (STUDY_COLUMNS if study_metrics else []) + COLUMNS[3:]
    table = Table(title=title, title_justify="left")
    table.add_column("method", no_wrap=True)
    for _, header in columns:
        table.add_column(header, justify="right")
    for method in methods:
        stats = summary.get(method, {})
        table.add_row(method, *(_cell(stats.get(key), key) for key, _ in columns))
    # wide enough for "0.000 ± 0.000" in every column, even when stdout is not a terminal
    needed = 18 + 16 * len(columns)
    Console(width=max(needed, Console().width)).print(table)


def progress_printer(total: int, quiet: bool) -> Callable[[Any], None]:
    """A callback for ``run_point``: prints '[i/total] method seed=s  mcc_ood=…  time' per finished run."""
    done = [0]

    def show(result: Any) -> None:
        done[0] += 1
        if quiet:
            return
        m = result.metrics
        print(
            f"[{done[0]}/{total}] {result.method:<14} seed={result.seed}  mcc_id={m['mcc_id']:.3f}  "
            f"mcc_ood={m['mcc_ood']:.3f}  acc_ood={m['acc_ood']:.3f}  {result.timings['total_s']:.1f}s",
            flush=True,
        )

    return show

"""Terminal output of a point: one progress line per finished run and the method × metric summary table."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table

from dictlab.experiments.runs import RunOutcome, RunSpec, last_line
from dictlab.experiments.summary import Stats

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


def _cell(stats: Stats | None, key: str) -> str:
    if stats is None:
        return "-"
    digits = 1 if key.endswith("_s") else 3
    text = f"{stats.mean:.{digits}f}"
    if stats.n > 1:
        text += f" ± {stats.std:.{digits}f}"
    return text


def print_summary(
    summary: dict[str, dict[str, Stats]], methods: Sequence[str], *, title: str, study_metrics: bool
) -> None:
    """Mean ± std over seeds for each method (rows, in the order given) and metric (columns); ``-`` where a
    method has no value (a failed run, or a metric undefined on its data)."""
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


def progress_printer(total: int, quiet: bool) -> Callable[[RunSpec, RunOutcome], None]:
    """An ``on_outcome`` callback: '[i/total] method seed=s  mcc_id=…  mcc_ood=…  acc_ood=…  time' per run."""
    done = [0]

    def show(spec: RunSpec, outcome: RunOutcome) -> None:
        done[0] += 1
        if quiet:
            return
        head = f"[{done[0]}/{total}] {spec.method or spec.task:<14} seed={spec.seed}"
        if not outcome.ok or not outcome.records:
            print(f"{head}  FAILED: {last_line(outcome.error, 'no records')}", flush=True)
            return
        m = outcome.records[0].metrics
        shown = "  ".join(f"{key}={m[key]:.3f}" for key in ("mcc_id", "mcc_ood", "acc_ood") if key in m)
        seconds = m.get("total_s", outcome.timings.get("total_s", 0.0))  # the method's own time, as in the table
        print(f"{head}  {shown}  {seconds:.1f}s", flush=True)

    return show

"""The report: the results store turned into figures (PNG/SVG) and one self-contained HTML page.

``build_report(store_or_rows, out_dir)`` is the entry point (``dictlab report`` calls it). The modules split
along what they do: ``aggregate`` (rows → grid, mean ± std over seeds), ``layouts`` (per-task choice of
metrics), ``panels`` (what each figure shows), ``figures`` (matplotlib drawing), ``phase`` (Donoho–Tanner heat
maps of phase diagrams and of sweeps over input_dim), ``tables``, ``html`` (the page)
and ``build`` (putting it together). Needs matplotlib.
"""

from dictlab.report.aggregate import Stats, seed_stats
from dictlab.report.build import build_report, section_content
from dictlab.report.layouts import LAYOUTS, TaskLayout

__all__ = ["LAYOUTS", "Stats", "TaskLayout", "build_report", "section_content", "seed_stats"]

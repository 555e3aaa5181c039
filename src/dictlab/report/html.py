"""The report as one self-contained HTML page: figures embedded as base64 PNG data URIs (or inline SVG), tables
as HTML, a small stylesheet inline. No script, no external file, no network reference."""

from __future__ import annotations

import base64
import html
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from dictlab.report.tables import Table, format_cell

_CSS = """
:root { color-scheme: light; --ink: #1d1d1f; --muted: #5f6368; --line: #e3e3e3; --accent: #1f4e79; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); background: #fafafa; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 64px; background: #fff; min-height: 100vh; }
header h1 { margin: 0 0 4px; font-size: 24px; color: var(--accent); }
header p.sub { margin: 0 0 14px; color: var(--muted); }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0 0 12px; font-size: 13px; }
dl.meta dt { color: var(--muted); } dl.meta dd { margin: 0; }
nav.toc { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; margin: 12px 0 20px; font-size: 13px; }
nav.toc ul { margin: 4px 0; padding-left: 18px; } nav.toc ul.two { columns: 2; }
nav a, a { color: var(--accent); text-decoration: none; } nav a:hover { text-decoration: underline; }
section.experiment { border-top: 2px solid var(--accent); margin-top: 28px; padding-top: 6px; }
h2 { font-size: 20px; margin: 10px 0 4px; } h3 { font-size: 16px; margin: 22px 0 6px; color: #333; }
p.desc { margin: 2px 0 8px; color: #333; } p.settings { margin: 0 0 10px; color: var(--muted); font-size: 13px; }
div.figures { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 14px; margin: 10px 0 18px; }
figure { margin: 0; padding: 10px 12px 8px; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
figure.wide { grid-column: 1 / -1; }
figure img, figure .svg { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: 13px; color: #333; margin-top: 6px; }
figcaption .files { color: var(--muted); font-size: 12px; }
div.table-wrap { overflow-x: auto; margin: 8px 0 16px; }
table { border-collapse: collapse; font-size: 12.5px; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 4px 0; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px; text-align: right; white-space: nowrap; }
th { background: #f2f4f7; position: sticky; top: 0; }
th.text, td.text { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
p.note { color: var(--muted); font-size: 12px; margin: 2px 0 0; }
td.error { white-space: normal; max-width: 420px; text-align: left; \
font-family: ui-monospace, monospace; font-size: 11.5px; }
"""


@dataclass(frozen=True)
class EmbeddedFigure:
    """A rendered figure: ``mime`` is ``image/png`` (embedded as a data URI) or ``image/svg+xml`` (inlined);
    ``files`` names the files written beside the page."""

    key: str
    title: str
    caption: str
    alt: str
    mime: str
    data: bytes
    files: tuple[str, ...] = ()
    wide: bool = False


@dataclass(frozen=True)
class Section:
    """One experiment × task: its heading, description, fixed settings, figures and tables."""

    key: str
    title: str
    description: str = ""
    settings: str = ""
    figures: tuple[EmbeddedFigure, ...] = ()
    tables: tuple[Table, ...] = ()
    notes: tuple[str, ...] = field(default=())


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG from its IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG image")
    return struct.unpack(">II", data[16:24])


def _inline_svg(data: bytes, alt: str) -> str:
    text = data.decode("utf-8")
    text = re.sub(r"<\?xml[^>]*\?>", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>", "", text, flags=re.S)
    return f'<div class="svg" role="img" aria-label="{_e(alt)}">{text.strip()}</div>'


def render_figure(figure: EmbeddedFigure, number: int) -> str:
    if figure.mime == "image/png":
        width, height = png_size(figure.data)
        encoded = base64.b64encode(figure.data).decode("ascii")
        body = (
            f'<img src="data:image/png;base64,{encoded}" alt="{_e(figure.alt)}" width="{width}" '
            f'height="{height}" loading="eager" decoding="sync">'
        )
    elif figure.mime == "image/svg+xml":
        body = _inline_svg(figure.data, figure.alt)
    else:
        raise ValueError(f"cannot embed {figure.mime!r}; allowed: image/png, image/svg+xml")
    files = f' <span class="files">Files: {_e(", ".join(figure.files))}.</span>' if figure.files else ""
    cls = ' class="wide"' if figure.wide else ""
    return (
        f'<figure id="{_e(figure.key)}"{cls} data-figure="{_e(figure.key)}">{body}'
        f"<figcaption><strong>Figure {number}.</strong> {_e(figure.caption)}{files}</figcaption></figure>"
    )


def render_table(table: Table) -> str:
    text = [all(isinstance(row[i], str) for row in table.rows if row[i] is not None) for i in range(len(table.columns))]
    left = ' class="text"'
    head = "".join(f'<th scope="col"{left if t else ""}>{_e(c)}</th>' for c, t in zip(table.columns, text, strict=True))
    body = []
    for row in table.rows:
        cells = []
        for i, (column, cell) in enumerate(zip(table.columns, row, strict=True)):
            cls = ' class="error"' if column == "error" else (left if text[i] else "")
            cells.append(f"<td{cls}>{_e(format_cell(cell))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    note = f'<p class="note">{_e(table.note)}</p>' if table.note else ""
    return (
        f'<div class="table-wrap"><table id="{_e(table.key)}" data-table="{_e(table.key)}">'
        f"<caption>{_e(table.title)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>{note}</div>"
    )


def render_page(
    title: str, subtitle: str, meta: Sequence[tuple[str, str]], front: Sequence[Table], sections: Sequence[Section]
) -> str:
    """The whole page: header with ``meta`` (label, value) pairs, contents, ``front`` tables (run counts),
    then every section with its figures (numbered through the page) and tables."""
    meta_html = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in meta)
    toc_class = ' class="two"' if len(sections) > 4 else ""
    toc = "".join(f'<li><a href="#{_e(s.key)}">{_e(s.title)}</a> ({len(s.figures)} figures)</li>' for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
        f'<header><h1>{_e(title)}</h1><p class="sub">{_e(subtitle)}</p><dl class="meta">{meta_html}</dl></header>',
        f'<nav class="toc" aria-label="Contents"><strong>Contents</strong><ul{toc_class}>{toc}</ul></nav>',
        *(render_table(t) for t in front),
    ]
    number = 0
    for section in sections:
        parts.append(f'<section class="experiment" id="{_e(section.key)}"><h2>{_e(section.title)}</h2>')
        if section.description:
            parts.append(f'<p class="desc">{_e(section.description)}</p>')
        if section.settings:
            parts.append(f'<p class="settings">{_e(section.settings)}</p>')
        parts.extend(f'<p class="note">{_e(note)}</p>' for note in section.notes)
        if section.figures:
            parts.append('<h3>Figures</h3><div class="figures">')
            for figure in section.figures:
                number += 1
                parts.append(render_figure(figure, number))
            parts.append("</div>")
        if section.tables:
            parts.append("<h3>Tables</h3>")
        parts.extend(render_table(t) for t in section.tables)
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "\n".join(parts)

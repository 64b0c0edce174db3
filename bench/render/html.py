"""The report as one self-contained HTML page, and the ``report`` command's writer.

Self-contained means viewable offline: plots are PNGs embedded as base64 data
URIs, styles are inline, nothing is fetched.

Every value from a run folder (names, reasons, notes, environment) is escaped with
``html.escape``, attributes included, so a host or device named ``<script>`` is text.
Cells that did not run (error, oom, crashed, timeout) are styled alike; contended
and noisy cells say so in their status, and the page says how many were contended.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from pathlib import Path

from bench.analysis.report import FAILED_STATUSES, Report, Table, build_report
from bench.render.markdown import report_markdown
from bench.render.plots import add_figures
from bench.results.store import Run

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto; max-width: 1300px;
       color: #1d232a; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { margin-top: 2.2rem; border-bottom: 2px solid #d6dde4; padding-bottom: .2rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
table { border-collapse: collapse; font-size: .82rem; margin: .3rem 0 1rem; }
th, td { border: 1px solid #d6dde4; padding: .22rem .5rem; }
th { background: #eef2f6; text-align: left; } td.r { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #f8fafb; }
.scroll { overflow-x: auto; }
figure { margin: .6rem 0 1.2rem; } figure img { max-width: 100%; border: 1px solid #e3e8ed; }
figcaption { font-size: .78rem; color: #5a6570; }
.meta, .note { color: #5a6570; font-size: .85rem; }
nav a { margin-right: 1rem; }
.status-failed { color: #b3261e; font-weight: 600; } .status-skipped { color: #8a6d00; }
.status-flagged { color: #8a6d00; } .warning { color: #8a6d00; font-weight: 600; }
"""


def _status_class(value: str) -> list[str]:
    if value in FAILED_STATUSES:
        return ["status-failed"]
    if value == "skipped":
        return ["status-skipped"]
    return ["status-flagged"] if value.startswith("ok (") else []


def _html_table(table: Table, heading: str | None = "h3") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = []
    for row in table.rows:
        tds = []
        for value, align, header in zip(row, table.align, table.headers, strict=True):
            cls = ["r"] if align == "r" else []
            if header == "status":
                cls += _status_class(value)
            attr = f' class="{" ".join(cls)}"' if cls else ""
            tds.append(f"<td{attr}>{html.escape(value)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    if not table.rows:
        body.append(f'<tr><td colspan="{len(table.headers)}">none</td></tr>')
    css = f' class="{table.css_class}"' if table.css_class else ""
    title = f"<{heading}>{html.escape(table.title)}</{heading}>\n" if heading else ""
    return (
        f'{title}<div class="scroll"><table{css}>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def to_html(report: Report) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(report.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
        f'<p class="meta">{len(report.runs)} run(s): '
        + html.escape(", ".join(r.name for r in report.runs))
        + f"; {len(report.cells)} cells, {int((report.cells['status'] != 'ok').sum())} did not run; "
        + f"generated {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}</p>",
        "<nav>"
        + "".join(f'<a href="#{html.escape(s.anchor)}">{html.escape(s.title)}</a>' for s in report.sections)
        + '<a href="#failures">cells that did not run</a><a href="#environment">environment</a></nav>',
    ]
    if report.contended_note():
        parts.append(f'<p class="warning">{html.escape(report.contended_note())}</p>')
    for section in report.sections:
        parts.append(f'<h2 id="{html.escape(section.anchor)}">{html.escape(section.title)}</h2>')
        parts += [_html_table(t) for t in section.tables]
        for note in section.notes:
            parts.append(f'<p class="note">{html.escape(note)}</p>')
        for caption, png in section.figures:
            data = base64.b64encode(png).decode("ascii")
            parts.append(
                f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    parts.append('<h2 id="failures">Cells that did not run</h2>')
    parts.append(_html_table(report.failures, heading=None))
    parts.append('<h2 id="environment">Environment</h2>')
    parts.append(_html_table(report.environment, heading=None))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(runs: list[Run], html_path: Path | None, markdown_path: Path | None) -> Report:
    """Build once, write the formats asked for; plots are drawn only for HTML (they need matplotlib)."""
    report = build_report(runs)
    if html_path is not None:
        add_figures(report)  # matplotlib is imported inside the plot functions
        Path(html_path).write_text(to_html(report), encoding="utf-8")
    if markdown_path is not None:
        Path(markdown_path).write_text(report_markdown(report), encoding="utf-8")
    return report

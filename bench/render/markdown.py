"""GitHub-flavoured Markdown: the one table writer, the one escape, and the report as Markdown.

Both the comparison (CI job summaries, PR comments) and the report write their
tables through ``table_lines``, so escaping and alignment are the same in both.

Every value placed into Markdown goes through ``md_text``: host names, device
names, run ids, reasons and notes come from the machine or from a run folder
anyone can edit, and GitHub renders the HTML inside Markdown, so a device named
``<img src=x onerror=...>`` must arrive as text. ``md_text`` writes ``&`` and ``<``
as entities (no tag, comment, autolink or entity can start without them: ``>`` and
quotes are left, so genbench's ``->`` reads as an arrow, and no value sits inside an
attribute), and escapes what breaks a table row or a line (a backslash, ``|``, line
ends). Markup genbench adds itself (headings, the italics of a note, compare's
``Markup("**regressed**")``) wraps escaped text and is never escaped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bench.analysis.report import Report, Table

_LINE_ENDS = re.compile(r"\r\n|\r|\n")


def md_text(value: object) -> str:
    """``value`` as plain text inside Markdown: ``&`` and ``<`` as entities, ``\\`` and ``|`` escaped,
    line ends as spaces (a line end inside a table cell or a heading would end it)."""
    text = str(value).replace("&", "&amp;").replace("<", "&lt;")
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    return _LINE_ENDS.sub(" ", text)


class Markup(str):
    """Markdown genbench writes itself around a known word (compare's ``**regressed**``): placed
    into a table as it is, where any other cell is escaped."""


def _cell(value: object) -> str:
    return value if isinstance(value, Markup) else md_text(value)


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def table_lines(
    headers: Sequence[str], rows: Sequence[Sequence[object]], align: Sequence[str] = ()
) -> list[str]:
    """Header, alignment row ('r' right-aligns a column) and rows; an empty table reads "none".

    Every cell is escaped (``md_text``) except ``Markup``.
    """
    align = list(align) or ["l"] * len(headers)
    lines = [_row(headers), "|" + "|".join("--:" if a == "r" else "---" for a in align) + "|"]
    lines += [_row(row) for row in rows]
    if not rows:
        lines.append(_row(["none", *[""] * (len(headers) - 1)]))
    return lines


def _table(table: Table) -> str:
    return "\n".join(
        [f"### {md_text(table.title)}", "", *table_lines(table.headers, table.rows, table.align)]
    )


def report_markdown(report: Report) -> str:
    """The report's tables, without plots: for a README or a PR."""
    parts = [
        f"# {md_text(report.title)}",
        "",
        f"{len(report.runs)} run(s): {md_text(', '.join(r.name for r in report.runs))}",
        "",
    ]
    contended = report.contended_note()
    if contended:
        parts += [f"**{md_text(contended)}**", ""]
    for section in report.sections:
        parts += [f"## {md_text(section.title)}", ""]
        for table in section.tables:
            parts += [_table(table), ""]
        parts += [f"_{md_text(note)}_" for note in section.notes] + [""]
    parts += ["## Cells that did not run", "", _table(report.failures), ""]
    parts += ["## Environment", "", _table(report.environment), ""]
    return "\n".join(parts)

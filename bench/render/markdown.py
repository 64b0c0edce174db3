"""GitHub-flavoured Markdown: the one table writer, and the report as Markdown.

Both the comparison (CI job summaries, PR comments) and the report write their
tables through ``table_lines``, so escaping and alignment are the same in both.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.analysis.report import Report, Table


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def table_lines(
    headers: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] = ()
) -> list[str]:
    """Header, alignment row ('r' right-aligns a column) and rows; an empty table reads "none"."""
    align = list(align) or ["l"] * len(headers)
    lines = [_row(headers), "|" + "|".join("--:" if a == "r" else "---" for a in align) + "|"]
    lines += [_row(row) for row in rows]
    if not rows:
        lines.append(_row(["none", *[""] * (len(headers) - 1)]))
    return lines


def _table(table: Table) -> str:
    return "\n".join([f"### {table.title}", "", *table_lines(table.headers, table.rows, table.align)])


def report_markdown(report: Report) -> str:
    """The report's tables, without plots: for a README or a PR."""
    parts = [
        f"# {report.title}",
        "",
        f"{len(report.runs)} run(s): {', '.join(r.name for r in report.runs)}",
        "",
    ]
    for section in report.sections:
        parts += [f"## {section.title}", ""]
        for table in section.tables:
            parts += [_table(table), ""]
        parts += [f"_{note}_" for note in section.notes] + [""]
    parts += ["## Cells that did not run", "", _table(report.failures), ""]
    parts += ["## Environment", "", _table(report.environment), ""]
    return "\n".join(parts)

"""Console tables that stay readable at the console's width: columns left out rather than crushed.

Rich fits a table that is too wide by shrinking its columns; past their
minimum it ellipsizes numbers ("66…") and can squeeze a column to nothing.
Here every column says how it may give way. A ``fixed`` column (numbers, keys,
short words) is exactly as wide as its longest cell, so a number is never cut
or wrapped; its header wraps at spaces when the table is tight. A text column
wraps at spaces, folds a word longer than the column instead of cutting it, and
is not made narrower than its ``min_width``. When the columns do not fit, the
lowest-priority ones (highest ``drop`` rank) are left out first and the table
says which, and where to read them.

Long text (reasons, sources, notes) does not belong in a cell: ``Notes`` numbers
each distinct text once, the cell holds "[n]" and the texts follow the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

Cell = str | Text


@dataclass(frozen=True)
class Column:
    """How one column looks and gives way. ``drop`` 0 is never left out; higher ranks go first.

    ``min_width`` (text columns): below this width the column would wrap most of its
    cells, so lower-ranked columns are left out first.
    """

    header: str
    fixed: bool = False
    right: bool = False
    drop: int = 0
    min_width: int = 0

    @staticmethod
    def number(header: str, drop: int = 0) -> Column:
        return Column(header, fixed=True, right=True, drop=drop)


@dataclass
class Notes:
    """Distinct long texts numbered in first-seen order; ``ref`` gives the "[n]" a cell shows."""

    texts: dict[str, int] = field(default_factory=dict)

    def ref(self, text: str | None) -> str:
        if not text:
            return ""
        return f"[{self.texts.setdefault(text, len(self.texts) + 1)}]"

    def lines(self) -> list[str]:
        return [f"[{n}] {text}" for text, n in self.texts.items()]


def _text(cell: Cell) -> Text:
    return cell if isinstance(cell, Text) else Text(cell)


def _longest_line(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def _longest_word(text: str) -> int:
    return max((len(word) for line in text.splitlines() for word in line.split()), default=0)


def _build(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    keep: list[int],
    whole_headers: bool,
    **options: Any,
) -> Table:
    table = Table(**options)
    for i in keep:
        column = columns[i]
        justify = "right" if column.right else "left"
        if column.fixed:
            header = _longest_line(column.header) if whole_headers else _longest_word(column.header)
            width = max([len(_text(row[i]).plain) for row in rows] + [header, 1])
            table.add_column(column.header, justify=justify, width=width)
        else:
            table.add_column(column.header, justify=justify, overflow="fold")
    for row in rows:
        table.add_row(*(_text(row[i]) for i in keep))
    return table


def _widths(table: Table) -> Measurement:
    """The table's narrowest layout (fixed widths, text at its longest word) and its natural one."""
    console = Console(width=10_000)
    return Measurement.get(console, console.options, table)


def _floor(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], keep: list[int]) -> int:
    """How much wider than its longest word each text column wants to stay (its ``min_width``)."""
    extra = 0
    for i in keep:
        column = columns[i]
        if column.fixed or not column.min_width:
            continue
        cells = [_text(row[i]).plain for row in rows] + [column.header]
        natural = max(_longest_line(c) for c in cells)
        extra += max(0, min(column.min_width, natural) - max(_longest_word(c) for c in cells))
    return extra


def fit_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    width: int,
    *,
    elsewhere: str = "",
    **options: Any,
) -> tuple[Table, str]:
    """The table with as many columns as fit ``width``, and a line naming those left out ("" if none).

    ``elsewhere`` says where the left-out columns can be read (the CSV, a flag);
    ``options`` go to rich's Table (title, caption, ...).
    """
    keep = list(range(len(columns)))
    while True:
        table = _build(columns, rows, keep, True, **options)
        if _widths(table).maximum <= width:
            break  # every cell and header on one line
        table = _build(columns, rows, keep, False, **options)  # headers wrapped at their spaces
        droppable = [i for i in keep if columns[i].drop > 0]
        if _widths(table).minimum + _floor(columns, rows, keep) <= width or not droppable:
            break
        keep.remove(max(droppable, key=lambda i: (columns[i].drop, i)))  # the rightmost of the highest rank
    left_out = [columns[i].header.replace("\n", " ") for i in range(len(columns)) if i not in keep]
    if not left_out:
        return table, ""
    plural = "column" if len(left_out) == 1 else "columns"
    where = f"; {elsewhere}" if elsewhere else ""
    return table, f"({len(left_out)} {plural} left out at this width: {', '.join(left_out)}{where})"


def below(*lines: str) -> list[Text]:
    """Lines to print under a table (notes, what was left out) as one plain block; [] when none."""
    text = "\n".join(line for line in lines if line)
    return [Text(text)] if text else []

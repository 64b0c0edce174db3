"""fit_table: columns left out by rank (and said so) rather than numbers cut; Notes numbered once."""

from __future__ import annotations

from rich.console import Console

from bench.render.tables import Column, Notes, fit_table

COLUMNS = [
    Column("name", min_width=10),
    Column.number("must"),
    Column.number("optional", drop=1),
    Column.number("first to go", drop=2),
]
ROWS = [["a fairly long device name", "123,456", "7.89", "0.001"], ["short", "1", "2", "3"]]


def _lines(table: object, width: int) -> list[str]:
    console = Console(width=width, record=True)
    console.print(table)
    return console.export_text().splitlines()


def test_everything_fits_on_one_line_when_wide() -> None:
    table, left_out = fit_table(COLUMNS, ROWS, 120)
    assert left_out == ""
    assert len(_lines(table, 120)) == 6  # top, header, rule, two rows, bottom: nothing wrapped


def test_highest_rank_goes_first_and_the_line_says_where_to_look() -> None:
    table, left_out = fit_table(COLUMNS, ROWS, 36, elsewhere="see the CSV")
    assert [c.header for c in table.columns] == ["name", "must", "optional"]
    assert left_out == "(1 column left out at this width: first to go; see the CSV)"
    lines = _lines(table, 36)
    assert all(len(line) <= 36 for line in lines) and "123,456" in "\n".join(lines)


def test_rank_zero_columns_stay_and_numbers_are_never_cut() -> None:
    table, left_out = fit_table(COLUMNS, ROWS, 24)
    assert [c.header for c in table.columns] == ["name", "must"]
    assert "optional, first to go" in left_out
    text = "\n".join(_lines(table, 24))
    assert "…" not in text and "123,456" in text


def test_notes_number_each_text_once() -> None:
    notes = Notes()
    assert [notes.ref("b"), notes.ref("a"), notes.ref("b"), notes.ref(""), notes.ref(None)] == [
        "[1]",
        "[2]",
        "[1]",
        "",
        "",
    ]
    assert notes.lines() == ["[1] b", "[2] a"]

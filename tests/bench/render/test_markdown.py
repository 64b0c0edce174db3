"""Markdown output: every value from a run folder arrives as text, and no value breaks a table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.analysis.compare import Settings, compare_runs
from bench.analysis.report import build_report
from bench.render.compare import to_markdown
from bench.render.markdown import Markup, md_text, table_lines
from bench.results.store import load_run
from tests.bench.analysis.test_compare import cell, lognormal, make_run

EVIL_HOST = "<script>alert(1)</script>"
EVIL_DEVICE = "<img src=x onerror=alert(1)> | GPU"
EVIL_REASON = "RuntimeError: a | b\n| forged | row |\r\n<b>bold</b> & more"


def _pipes(line: str) -> int:
    """Pipes that split a table row: those after an even number of backslashes."""
    return sum(1 for m in re.finditer(r"(\\*)\|", line) if len(m.group(1)) % 2 == 0)


def _assert_safe(markdown: str) -> None:
    assert "<script" not in markdown and "<img" not in markdown and "<b>" not in markdown
    for block in re.split(r"\n\s*\n", markdown):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        if rows:
            assert len(rows) == len(block.splitlines()), block  # no value started a line of its own
            assert len({_pipes(row) for row in rows}) == 1, block  # every row has the header's columns


def _evil_runs(tmp_path: Path) -> tuple[Path, Path]:
    def rows(run_id: str) -> list[dict[str, object]]:
        return [
            cell(0, run_id=run_id, host=EVIL_HOST, device_name=EVIL_DEVICE, notes="stop=converged | <i>x</i>"),
            cell(1, run_id=run_id, host=EVIL_HOST, device_name=EVIL_DEVICE, pipeline="int8", status="error",
                 reason=EVIL_REASON),
        ]  # fmt: skip

    env = {"run_id": "<svg onload=alert(1)>", "hostname": EVIL_HOST, "device": "cpu", "cpu": {"model": "<x>"}}
    base = make_run(tmp_path / "base", rows("base"), {0: lognormal(30, 5, 0.02, 1)}, env)
    new = make_run(tmp_path / "new", rows("new"), {0: lognormal(30, 10, 0.02, 2)}, {**env, "run_id": "n|ew"})
    return base, new


def test_md_text_escapes_html_and_table_breakers() -> None:
    assert md_text("<script>") == "&lt;script>"
    assert md_text("a & b") == "a &amp; b"
    assert md_text("a|b") == "a\\|b"
    assert md_text("a\\|b") == "a\\\\\\|b"  # a backslash cannot un-escape the pipe after it
    assert md_text("one\ntwo\r\nthree\rfour") == "one two three four"
    assert md_text("prune:0.5+int8 -> exact") == "prune:0.5+int8 -> exact"  # genbench's own text reads as is


def test_table_cells_are_escaped_except_markup() -> None:
    lines = table_lines(["a|b", "<h>"], [[Markup("**regressed**"), "**x** <y>"]])
    assert lines[0] == "| a\\|b | &lt;h> |"
    assert lines[2] == "| **regressed** | **x** &lt;y> |"


def test_report_markdown_holds_no_raw_html_and_whole_tables(tmp_path: Path) -> None:
    from bench.render.markdown import report_markdown

    base, new = _evil_runs(tmp_path)
    markdown = report_markdown(build_report([load_run(base), load_run(new)]))
    _assert_safe(markdown)
    assert "&lt;script>alert(1)&lt;/script>" in markdown  # the host is still there, as text
    assert "RuntimeError: a \\| b \\| forged \\| row \\| &lt;b>bold&lt;/b> &amp; more" in markdown


def test_compare_markdown_holds_no_raw_html_and_whole_tables(tmp_path: Path) -> None:
    base, new = _evil_runs(tmp_path)
    # judged by the interval alone: a synthetic 2x between single runs is within the measured drift
    markdown = to_markdown(compare_runs(load_run(base), load_run(new), Settings(drift_allowance=False)))
    _assert_safe(markdown)
    assert "&lt;svg onload=alert(1)> -> n\\|ew" in markdown  # the run names in the header line
    assert "| **regressed** |" in markdown  # 5 ms -> 10 ms: compare's own bold survives


@pytest.mark.parametrize("side", ["base", "new"])
def test_one_sided_cells_in_compare_markdown_are_escaped(tmp_path: Path, side: str) -> None:
    base, _ = _evil_runs(tmp_path)
    rows = [
        cell(0, run_id="o", host=EVIL_HOST, device_name=EVIL_DEVICE),
        cell(1, run_id="o", host=EVIL_HOST, device_name=EVIL_DEVICE, model="vae"),
    ]
    other = make_run(tmp_path / "other", rows, {0: lognormal(30, 5, 0.02, 3)})
    pair = (load_run(base), load_run(other)) if side == "base" else (load_run(other), load_run(base))
    markdown = to_markdown(compare_runs(*pair))
    assert "Cells on one side only" in markdown
    _assert_safe(markdown)

"""The comparison on the console: names from run folders are text, never Rich markup."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from bench.analysis.compare import compare_runs
from bench.render.compare import console_tables
from bench.results.store import load_run
from tests.bench.analysis.test_compare import cell, lognormal, make_run


def test_run_and_device_names_with_rich_markup_print_as_they_are(tmp_path: Path) -> None:
    rows = [cell(0, device_name="GPU [/] [red]x")]
    env = {"run_id": "nightly [/]", "hostname": "h", "device": "cpu", "cpu": {"model": "m"}}
    base = make_run(tmp_path / "a", rows, {0: lognormal(30, 5, 0.02, 1)}, env)
    new = make_run(
        tmp_path / "b", [dict(r) for r in rows], {0: lognormal(30, 5, 0.02, 2)}, {**env, "run_id": "b"}
    )
    console = Console(width=200, record=True)
    for renderable in console_tables(compare_runs(load_run(base), load_run(new)), width=200):
        console.print(renderable)  # a closing tag with nothing to close raised MarkupError here
    text = console.export_text()
    assert "nightly [/] -> b" in text and "GPU [/] [red]x" in text

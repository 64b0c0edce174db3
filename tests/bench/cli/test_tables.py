"""The console tables of devices, project and compare at 100 and 130 columns: nothing cut, numbers whole.

Each command runs end to end (``main``) with its console replaced by a recording
one of the width under test, on the committed run under results/. What a user
saw before: numbers cut to "66…", a name column of zero width, every compare
cell wrapped to four lines.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.console import Console

import bench.cli.analysis
import bench.cli.hardware
from bench.cli import main
from bench.hardware.catalog import load_catalog
from bench.render.hardware import display_value
from bench.results.store import load_run

RUN = Path(__file__).resolve().parents[3] / "results" / "cpu-amd-epyc-2c-20261123"
WIDTHS = (100, 130)


def _render(monkeypatch: pytest.MonkeyPatch, width: int, argv: list[str]) -> str:
    console = Console(width=width, record=True, color_system=None)
    monkeypatch.setattr(bench.cli.hardware, "wide_console", lambda: console)
    monkeypatch.setattr(bench.cli.analysis, "wide_console", lambda: console)
    assert main(argv) == 0
    return console.export_text()


def _tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Each table in ``text``: its column headers (wrapped lines joined) and its body lines, split in cells."""
    tables: list[tuple[list[str], list[list[str]]]] = []
    header_lines: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("┃"):
            header_lines.append([c.strip() for c in line.strip().strip("┃").split("┃")])
        elif line.startswith("┡"):
            headers = [" ".join(filter(None, parts)) for parts in zip(*header_lines, strict=True)]
            tables.append((headers, []))
            header_lines = []
        elif line.startswith("│") and tables:
            tables[-1][1].append([c.strip() for c in line.strip().strip("│").split("│")])
    return tables


def _check(
    text: str, width: int, numbers: set[str], keys: set[str]
) -> list[tuple[list[str], list[list[str]]]]:
    """No ellipsis, every line within ``width``, the ``keys`` among the first table's headers, and each
    number column's cells on one line (a body line holds all of a row's numbers or none of them)."""
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width, text
    tables = _tables(text)
    assert tables, text
    assert keys <= set(tables[0][0]), tables[0][0]
    for headers, lines in tables:
        columns = [i for i, header in enumerate(headers) if header in numbers]
        for cells in lines:
            filled = [bool(cells[i]) for i in columns]
            assert all(filled) or not any(filled), (headers, cells)
    return tables


@pytest.mark.parametrize("width", WIDTHS)
def test_devices_table_fits_and_keeps_numbers_whole(monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    text = _render(monkeypatch, width, ["devices"])
    numbers = {"fp32", "tf32", "fp16", "bf16", "fp8", "int8", "memory GiB", "bandwidth GB/s", "TDP W",
               "price USD", "cloud USD/h"}  # fmt: skip
    tables = _check(text, width, numbers, {"key", "name", "fp32", "bf16", "memory GiB"})
    headers, lines = tables[0]
    catalog = load_catalog()
    rows = {cells[0]: cells for cells in lines if cells[0]}
    assert set(rows) == set(catalog.devices)
    for key, spec in catalog.devices.items():
        assert rows[key][headers.index("fp32")] == display_value(spec.peak["fp32"], "TFLOPS")
        assert rows[key][headers.index("name")]  # the name column has room for at least a word
    if len(headers) < 3 + len(numbers):
        assert "left out at this width" in text


def test_devices_sources_are_numbered_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _render(monkeypatch, 100, ["devices", "--sources"])
    _check(text, 100, set(), {"key", "name"})
    source = load_catalog().devices["h100-sxm"].peak["fp32"]
    assert source is not None
    assert re.search(r"^\[\d+\] " + re.escape(source.source), text, re.MULTILINE)


@pytest.mark.parametrize("width", WIDTHS)
def test_project_table_fits_and_keeps_numbers_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cached_cpu_peak: None, width: int
) -> None:
    csv = tmp_path / "projection.csv"
    argv = ["project", "--from", str(RUN), "--targets", "h100-sxm,l4,rtx-4090", "--csv", str(csv)]
    text = _render(monkeypatch, width, argv)
    numbers = {"batch", "items/s", "band", "latency ms", "peak", "items/s per k$", "$ per M items", "items/J"}
    tables = _check(text, width, numbers, {"target", "model", "pipeline", "batch", "items/s"})
    headers, lines = tables[0]
    assert {cells[0] for cells in lines} == {"h100-sxm", "l4", "rtx-4090"}
    assert all(len(cells) == len(headers) for cells in lines)
    assert "left out at this width" in text and str(csv) in text  # the CSV has every column
    # why a row has no number (int8 has no CPU peak to calibrate on, ...) is a note below the table
    status = re.search(r"^\[1\] ([a-z-]+): ", text, re.MULTILINE)
    assert status is not None and status[1] != "ok"
    assert status[1] not in "".join("".join(cells) for cells in lines)


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_table_fits_on_one_line_per_number(monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    text = _render(monkeypatch, width, ["compare", str(RUN), str(RUN)])
    numbers = {"p50 ms base", "p50 ms new", "latency ratio [95% CI]", "items/s ratio", "PSNR dB"}
    tables = _check(text, width, numbers, {"cell", "verdict", "latency ratio [95% CI]", "why"})
    headers, lines = tables[0]
    verdicts = [cells[headers.index("verdict")] for cells in lines if cells[headers.index("verdict")]]
    assert len(verdicts) == len(load_run(RUN).cells)  # one verdict per cell, on one line
    assert set(verdicts) <= {"regressed", "improved", "noisy", "unchanged"}
    assert "on AMD EPYC" in text  # one device: named once, not on every row
    assert re.search(r"^\[\d+\] interval ", text, re.MULTILINE)  # the why, below the table
    for cells in lines:
        ratio = cells[headers.index("latency ratio [95% CI]")]
        assert not ratio or re.fullmatch(r"\d\.\d+ \[\d\.\d+, \d\.\d+\]", ratio), ratio

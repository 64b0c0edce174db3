"""Rich console output: progress over cells and a summary table per model, with its workload's columns."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from bench.analysis.report import WORKLOAD_METRICS, low_fidelity, settings_text, speedups, workload_of
from bench.core.numbers import fixed, psnr
from bench.render.tables import Cell, Column, Notes, fit_table


def make_console(min_width: int = 140) -> Console:
    """A console that does not wrap tables at 80 columns when writing to a log or CI."""
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, min_width)
    return console


STATUS_STYLE = {
    "ok": "green", "skipped": "yellow", "error": "red", "oom": "magenta", "crashed": "bold red", "timeout": "red",
}  # fmt: skip


@contextmanager
def cell_progress(console: Console, total: int) -> Iterator[Progress]:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with progress:
        yield progress


def with_speedup(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``speedup_vs_fp32``: throughput over the fp32 row of the same model/size/batch/device.

    The same ratio the HTML report shows (``bench.analysis.report.speedups``), keyed by the device of this run.
    """
    frame = frame.copy()
    frame["speedup_vs_fp32"] = speedups(frame.assign(device_label=frame["device"])).to_numpy()
    return frame


def summary_tables(frame: pd.DataFrame, width: int | None = None) -> list[Table]:
    """One table per model, with its workload's columns.

    A forward model's: pipeline, batch, p50, items/s, speedup vs fp32, peak MB, PSNR,
    status. A generate model's and a sample model's: pipeline, batch, the columns of
    ``bench.analysis.report.WORKLOAD_METRICS`` (the report's, so the two agree), status;
    the speedup is on the workload's own speed (output tokens/s, s/image).

    Reasons of cells that did not run go in the table's caption, one line per distinct
    reason, so the table stays readable in an 80-column terminal; at a narrow ``width``
    the lowest-ranked columns (a forward table's peak memory, then its speedup) are left
    out before anything else.
    """
    width = make_console().width if width is None else width  # the width the run command prints at
    tables = []
    frame = with_speedup(frame)
    frame["speedup"] = frame["speedup_vs_fp32"]  # the name WORKLOAD_METRICS reads
    for (model, size), group in frame.groupby(["model", "size"], sort=False):
        workload = workload_of(group)
        if _served(group):
            tables.append(_serving_table(str(model), str(size), group, width))
        elif workload in WORKLOAD_METRICS:
            tables.append(_workload_table(str(model), str(size), group, workload, width))
        else:
            tables.append(_forward_table(str(model), str(size), group, width))
    return tables


def _status_cell(row: Any, notes: Notes, low: str) -> Text:
    """The status, its reason's note number, noisy or contended, and ``low`` when fidelity failed."""
    status = str(row.status)
    shown = status
    if status != "ok":
        shown = f"{status} {notes.ref(str(row.reason))}"
    if status == "ok" and row.noisy:
        shown = "noisy"
    if status == "ok" and not pd.isna(row.contended) and bool(row.contended):
        shown = "contended"  # above noisy: the spread may be tight and the number still someone else's
    if status == "ok" and not pd.isna(row.fidelity_ok) and not bool(row.fidelity_ok):
        shown += f", {low}"
    return Text(shown, style=STATUS_STYLE.get(status, ""))


def _pipeline_cell(row: Any, repeated: bool) -> str:
    return str(row.pipeline) + (f" #{int(row.repeat)}" if repeated else "")


def _finish(
    columns: list[Column], rows: list[list[Cell]], group: pd.DataFrame, title: str, notes: Notes, width: int
) -> Table:
    """Fit the table to ``width``; its caption: the reasons, the contended cells, what was left out."""
    table, left_out = fit_table(
        columns, rows, width, title=title, title_justify="left", elsewhere="cells.csv has them"
    )
    contended = group[(group["status"] == "ok") & group["contended"].fillna(False).astype(bool)]
    caption = [*notes.lines(), _contended_line(contended), left_out]
    if any(caption):
        table.caption = "\n".join(line for line in caption if line)
        table.caption_justify = "left"
    return table


def _forward_table(model: str, size: str, group: pd.DataFrame, width: int) -> Table:
    item = str(group["item"].iloc[0])
    notes = Notes()
    rows: list[list[Cell]] = []
    repeated = group["repeat"].fillna(0).nunique() > 1
    for row in group.sort_values(["batch_size", "cell_id"]).itertuples(index=False):
        peak = row.peak_device_mem_mb if pd.notna(row.peak_device_mem_mb) else row.peak_host_rss_mb
        rows.append(
            [
                _pipeline_cell(row, repeated), str(row.batch_size), fixed(row.latency_ms_p50, 2),
                fixed(row.throughput_items_s, 1), fixed(row.speedup_vs_fp32, 2, "x"), fixed(peak, 0),
                psnr(row.psnr_db), _status_cell(row, notes, low_fidelity("forward")),
            ]
        )  # fmt: skip
    columns = [
        Column("pipeline", fixed=True), Column.number("batch"), Column.number("p50 ms"), Column.number(f"{item}/s"),
        Column.number("speedup", drop=1), Column.number("peak MB", drop=2), Column.number("PSNR dB"),
        Column("status", fixed=True),
    ]  # fmt: skip
    return _finish(columns, rows, group, f"{model} ({size}) on {group['device_name'].iloc[0]}", notes, width)


def _workload_table(model: str, size: str, group: pd.DataFrame, workload: str, width: int) -> Table:
    """A generate or sample model's table; its title says what one timed call was (prompt, steps)."""
    metrics = WORKLOAD_METRICS[workload]
    notes = Notes()
    rows: list[list[Cell]] = []
    repeated = group["repeat"].fillna(0).nunique() > 1
    for row in group.sort_values(["batch_size", "cell_id"]).itertuples(index=False):
        values = [m.text(row) if row.status == "ok" else "-" for m in metrics]
        rows.append(
            [_pipeline_cell(row, repeated), str(row.batch_size), *values, _status_cell(row, notes, low_fidelity(workload))]
        )  # fmt: skip
    columns = [
        Column("pipeline", fixed=True),
        Column.number("batch"),
        *(Column.number(m.header, drop=m.drop) for m in metrics),
        Column("status", fixed=True),
    ]
    title = f"{model} ({size}) on {group['device_name'].iloc[0]}"
    settings = settings_text(group[group["status"] == "ok"], workload)
    return _finish(columns, rows, group, f"{title}: {settings}" if settings else title, notes, width)


def _served(group: pd.DataFrame) -> bool:
    """Rows of a serving cell: a server load, a peak search or a soak (their columns are the load's)."""
    scenario = group["scenario"] if "scenario" in group else pd.Series(dtype="string")
    return bool(scenario.eq("server").any() or group["soak_s"].notna().any())


def _serving_table(model: str, size: str, group: pd.DataFrame, width: int) -> Table:
    """A serving run's table: the load offered and held, latency from scheduled arrival, queueing, the SLO."""
    notes = Notes()
    rows: list[list[Cell]] = []
    for row in group.sort_values(["cell_id"]).itertuples(index=False):
        target = "peak" if pd.notna(row.peak_qps) else fixed(row.target_qps, 3 if row.target_qps < 10 else 1)
        slo = "-" if pd.isna(row.slo_met) else ("met" if bool(row.slo_met) else "missed")
        held = "overloaded" if not pd.isna(row.overloaded) and bool(row.overloaded) else ""
        rows.append(
            [
                str(row.pipeline), str(row.batch_size), target, fixed(row.achieved_qps, 2),
                fixed(row.latency_ms_p50, 1), fixed(row.latency_ms_p99, 1), fixed(row.queue_ms_p99, 1),
                fixed(row.mean_batch, 2), "-" if pd.isna(row.dropped) else str(int(row.dropped)),
                fixed(row.peak_qps, 2), slo, psnr(row.psnr_db),
                Text(held, style="red") if held else _status_cell(row, notes, low_fidelity("forward")),
            ]
        )  # fmt: skip
    columns = [
        Column("pipeline", fixed=True), Column.number("max batch"), Column.number("target qps"),
        Column.number("achieved qps"), Column.number("p50 ms"), Column.number("p99 ms"),
        Column.number("queue p99 ms", drop=2), Column.number("mean batch", drop=3), Column.number("dropped", drop=1),
        Column.number("peak qps"), Column("SLO", fixed=True), Column.number("PSNR dB", drop=4),
        Column("status", fixed=True),
    ]  # fmt: skip
    slos = group["slo_p99_ms"].dropna().unique()
    title = f"{model} ({size}) served on {group['device_name'].iloc[0]}: latency from scheduled arrival"
    if len(slos) == 1:
        title += f", SLO p99 <= {slos[0]:g} ms"
    return _finish(columns, rows, group, title, notes, width)


def _contended_line(contended: pd.DataFrame) -> str:
    """The caption line for cells whose timed region shared the machine: how many, and how busy it was."""
    if contended.empty:
        return ""
    busiest = contended["host_busy_pct"].max()
    load = f" (others used up to {busiest:.0f}% of the cells' cores)" if pd.notna(busiest) else ""
    return (
        f"contended: {len(contended)} cell(s) shared the machine while timed{load}; "
        "their latency is not the model's alone: re-run on a quiet machine"
    )

"""Rich console output: progress over cells and a summary table per model."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

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


def make_console(min_width: int = 140) -> Console:
    """A console that does not wrap tables at 80 columns when writing to a log or CI."""
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, min_width)
    return console


STATUS_STYLE = {"ok": "green", "skipped": "yellow", "error": "red", "oom": "magenta"}


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


def _fmt(value: object, spec: str) -> str:
    if value is None or value is pd.NA:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return format(value, spec)


def with_speedup(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``speedup_vs_fp32``: throughput over the fp32 row of the same model/size/batch/device.

    The same ratio the HTML report shows (``bench.report.speedups``), keyed by the device of this run.
    """
    from bench.analysis.report import speedups

    frame = frame.copy()
    frame["speedup_vs_fp32"] = speedups(frame.assign(device_label=frame["device"])).to_numpy()
    return frame


def summary_tables(frame: pd.DataFrame) -> list[Table]:
    """One table per model: pipeline, batch, p50, items/s, speedup vs fp32, peak MB, PSNR, status.

    Reasons of cells that did not run go in the table's caption, one line per distinct
    reason, so the table stays readable in an 80-column terminal.
    """
    tables = []
    frame = with_speedup(frame)
    for (model, size), group in frame.groupby(["model", "size"], sort=False):
        item = str(group["item"].iloc[0])
        table = Table(title=f"{model} ({size}) on {group['device_name'].iloc[0]}", title_justify="left")
        for col, justify in [
            ("pipeline", "left"), ("batch", "right"), ("p50 ms", "right"), (f"{item}/s", "right"),
            ("speedup", "right"), ("peak MB", "right"), ("PSNR dB", "right"), ("status", "left"),
        ]:  # fmt: skip
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        reasons: dict[str, int] = {}
        for row in group.sort_values(["batch_size", "cell_id"]).itertuples(index=False):
            peak = row.peak_device_mem_mb if pd.notna(row.peak_device_mem_mb) else row.peak_host_rss_mb
            status = str(row.status)
            shown = status
            if status != "ok":
                number = reasons.setdefault(str(row.reason), len(reasons) + 1)
                shown = f"{status} [{number}]"
            if status == "ok" and row.noisy:
                shown = "noisy"
            if status == "ok" and not pd.isna(row.fidelity_ok) and not bool(row.fidelity_ok):
                shown += ", low PSNR"
            table.add_row(
                str(row.pipeline),
                str(row.batch_size),
                _fmt(row.latency_ms_p50, ".2f"),
                _fmt(row.throughput_items_s, ".1f"),
                _fmt(row.speedup_vs_fp32, ".2f") + ("x" if pd.notna(row.speedup_vs_fp32) else ""),
                _fmt(peak, ".0f"),
                _fmt(row.psnr_db, ".1f"),
                f"[{STATUS_STYLE.get(status, 'white')}]{shown}[/]",
            )
        if reasons:
            table.caption = "\n".join(f"[{n}] {text}" for text, n in reasons.items())
            table.caption_justify = "left"
        tables.append(table)
    return tables

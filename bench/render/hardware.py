"""Tables of the hardware commands: the device catalogue (and its sources), a measured peak, a projection.

Each builder takes the console's width and returns what to print, in order:
tables, then plain text blocks (numbered notes, the columns left out at this
width). What matters most stays at any width: the device key and name and the
fp32/fp16/bf16 peaks, memory and bandwidth; a projection's target, model,
pipeline, batch and items/s. Long text (sources, reasons) is a numbered note.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from rich.text import Text

from bench.core.numbers import num, percent
from bench.hardware.catalog import PRECISIONS, UNITS, Catalog, DeviceSpec, Figure
from bench.hardware.peak import DTYPES
from bench.render.tables import Cell, Column, Notes, below, fit_table

_FACTORS = {unit: factor for table in UNITS.values() for unit, factor in table.items()}


def display_value(figure: Figure | None, unit: str, digits: int = 4) -> str:
    """A figure in ``unit`` (one of those UNITS accepts), '-' when absent."""
    return "-" if figure is None else num(figure.value / _FACTORS[unit], digits)


# ----------------------------------------------------------------- devices
_PEAK_DROP = {"fp32": 0, "tf32": 2, "fp16": 0, "bf16": 0, "fp8": 2, "int8": 1}


def _device_row(key: str, spec: DeviceSpec) -> list[Cell]:
    peaks: list[Cell] = []
    for precision in PRECISIONS:
        fig = spec.peak[precision]
        unit = "TOPS" if precision == "int8" else "TFLOPS"
        peaks.append("-" if fig is None else display_value(fig, unit) + ("*" if fig.sparse else ""))
    name = spec.name if spec.per != "core" or "per core" in spec.name else f"{spec.name} (per core)"
    price = "-" if spec.price is None else "~" + display_value(spec.price, "USD")
    cloud = "-" if spec.cloud_price is None else "~" + display_value(spec.cloud_price, "USD/h")
    kind = spec.kind + ("/core" if spec.per == "core" else "")
    return [
        key, name, kind, *peaks, display_value(spec.memory, "GiB"), display_value(spec.memory_bandwidth, "GB/s"),
        display_value(spec.tdp, "W"), price, cloud,
    ]  # fmt: skip


def devices_tables(catalog: Catalog, width: int, sources: bool = False) -> list[Any]:
    """The catalogue at ``width`` columns; with ``sources``, every figure's source as numbered notes."""
    columns = [
        Column("key", fixed=True), Column("name"), Column("kind", fixed=True, drop=3),
        *(Column.number(p, drop=_PEAK_DROP[p]) for p in PRECISIONS),
        Column.number("memory GiB"), Column.number("bandwidth GB/s"), Column.number("TDP W", drop=3),
        Column.number("price USD", drop=1), Column.number("cloud USD/h", drop=2),
    ]  # fmt: skip
    rows = [_device_row(key, spec) for key, spec in catalog.devices.items()]
    title = (
        f"device catalogue {catalog.version} ({', '.join(catalog.files)}): dense peaks, TFLOPS (int8: TOPS); "
        "* = the vendor also quotes 2x with sparsity"
    )
    table, left_out = fit_table(
        columns, rows, width, title=title, title_justify="left", elsewhere="a wider console shows them"
    )
    footer = (
        "prices are indicative (rounded; dated in the catalogue): `--sources` lists every figure's source"
    )
    out: list[Any] = [table, *below(left_out, footer)]
    if sources:
        out += sources_tables(catalog, width)
    return out


def sources_tables(catalog: Catalog, width: int) -> list[Any]:
    """Every figure with its value and date; the source texts (long, often shared) as numbered notes."""
    notes = Notes()
    rows: list[list[Cell]] = []
    for key, spec in catalog.devices.items():
        figures: list[tuple[str, Figure | None]] = [(f"peak.{p}", spec.peak[p]) for p in PRECISIONS]
        figures += [
            (f, getattr(spec, f)) for f in ("memory", "memory_bandwidth", "tdp", "price", "cloud_price")
        ]
        for name, fig in figures:
            if fig is None:
                source = spec.unsupported.get(name.removeprefix("peak."), "")
                rows.append([key, name, "unsupported", "", notes.ref(source)])
                continue
            value = f"{display_value(fig, fig.unit, 6)} {fig.unit}"
            if fig.sparse:
                value += f" ({num(fig.sparse / _FACTORS[fig.unit], 6)} sparse)"
            rows.append([key, name, value, fig.date or "", notes.ref(fig.source)])
    columns = [
        Column("key", fixed=True), Column("figure", fixed=True), Column("value"),
        Column("date", fixed=True, drop=1), Column("source", fixed=True),
    ]  # fmt: skip
    table, left_out = fit_table(columns, rows, width, title="sources", title_justify="left")
    return [table, *below(left_out, *notes.lines())]


# ----------------------------------------------------------------- peak
def _windows_note(result: Any, what: str) -> str:
    """How a rate settled: '3 windows, best two 1% apart' or 'UNSTABLE: 6 windows, best two 12% apart'."""
    from bench.hardware.peak import spread

    windows = result.windows.get(what)
    if not windows:
        return ""
    gap = f"{len(windows)} windows, best two {100 * spread(windows):.0f}% apart"
    return gap if result.stable.get(what, True) else f"UNSTABLE: {gap}"


def peak_table(result: Any, width: int) -> list[Any]:
    """A measured peak (bench.hardware.peak.PeakResult): GEMM rate per dtype and copy bandwidth,
    how each rate settled, and the contention reading over the measurement."""
    from bench.hardware.peak import COPY

    rows: list[list[Cell]] = []
    for dtype in DTYPES:  # what bench peak measures, in its order
        if dtype in result.flops:
            unit = "TOPS" if dtype == "int8" else "TFLOPS"
            sizes = sorted({d["n"] for d in result.details if d["dtype"] == dtype})
            note = "; ".join(filter(None, [f"best of n = {sizes}", _windows_note(result, dtype)]))
            rows.append([dtype, f"{num(result.flops[dtype] / 1e12, 4)} {unit}", note])
        else:
            rows.append([dtype, "-", f"skipped: {result.skipped.get(dtype, 'not measured')}"])
    copy_note = "; ".join(filter(None, ["bytes read + written per second", _windows_note(result, COPY)]))
    rows.append(["copy", f"{num(result.copy_bytes_s / 1e9, 4)} GB/s", copy_note])
    hw = f", hw_id {result.hw_id}" if result.hw_id else ""
    threads = "1 thread" if result.threads == 1 else f"{result.threads or 'all'} threads"
    title = (
        f"measured peak: {result.device_name} ({result.device}, {threads}{hw}, "
        f"torch {result.torch_version}, {result.measured_at})"
    )
    columns = [Column("what", fixed=True), Column.number("rate"), Column("note")]
    table, _ = fit_table(columns, rows, width, title=title, title_justify="left")
    return [table, *below(f"conditions: {result.condition()}")]


# ----------------------------------------------------------------- project
OVERHEAD_NOTE = (
    "overhead-bound: under 1% of the roofline bound on the measured device, where per-call overhead limits "
    "it, so the projection is unreliable (the CSV's reason column has each row's efficiency)"
)


def _note_texts(status: str, reason: Any) -> list[str]:
    """What a row's notes say: why it has no number, or the caveats of the number it has."""
    text = reason if isinstance(reason, str) else ""
    if status != "ok":
        return [f"{status}: {text}" if text else status]
    parts = [part for part in text.split("; ") if part]
    return [OVERHEAD_NOTE if "per-call overhead" in part else part for part in parts]


def _fits_text(r: Any) -> str:
    """'yes (64)': fits, and the largest batch that does; without one (a sampling run's
    untraced activations) just yes or no."""
    answer = "yes" if bool(r.fits) else "no"
    return answer if pd.isna(r.max_batch) else f"{answer} ({num(r.max_batch)})"


def _with_phases(frame: pd.DataFrame) -> bool:
    """Whether any row is a phase other than a forward call (generate's prefill/decode, sampling)."""
    return "phase" in frame.columns and bool((frame["phase"].fillna("forward") != "forward").any())


def _projection_row(r: Any, notes: Notes, with_check: bool, phases: bool = False) -> list[Cell]:
    shown = r.status in ("ok", "does-not-fit")
    ok = r.status == "ok"
    row: list[Cell] = [
        str(r.target), f"{r.model} {r.size}", str(r.pipeline), *([str(r.phase)] if phases else []),
        str(r.batch_size),
        num(r.throughput_items_s) if ok else "-",
        f"{num(r.throughput_items_s_lo)}..{num(r.throughput_items_s_hi)}" if ok else "-",
        num(r.latency_ms) if ok else "-",
        f"{r.target_precision} {num(r.target_peak_tflops)}T" if shown else "-",
        str(r.bound) if shown else "-",
        _fits_text(r) if shown else "-",
        num(r.items_s_per_kusd), num(r.usd_per_million_items), num(r.items_per_joule),
        "".join(notes.ref(text) for text in _note_texts(str(r.status), r.reason)),
    ]  # fmt: skip
    if with_check:
        row += [num(r.measured_items_s), percent(r.error_pct)]
    return row


def projection_tables(
    frame: pd.DataFrame, source: Any, check: Any, csv: Path, from_run: Path, holdout: bool, width: int
) -> list[Any]:
    """The projection's table at ``width`` columns, its notes, the --check summary and where the CSV is."""
    with_check = check is not None
    phases = _with_phases(frame)
    columns = [
        Column("target", fixed=True), Column("model", fixed=True), Column("pipeline", fixed=True),
        *([Column("phase", fixed=True)] if phases else []), Column.number("batch"), Column.number("items/s"),
        Column.number("band", drop=1), Column.number("latency ms", drop=2), Column.number("peak", drop=5),
        Column("bound", fixed=True, drop=2 if phases else 5),
        Column("fits (max batch)", fixed=True, drop=3), Column.number("items/s per k$", drop=3),
        Column.number("$ per M items", drop=4), Column.number("items/J", drop=4), Column("notes", fixed=True),
    ]  # fmt: skip
    if with_check:
        columns += [Column.number("measured", drop=1), Column.number("error", drop=1)]
    notes = Notes()
    rows = [_projection_row(r, notes, with_check, phases) for r in frame.itertuples(index=False)]
    title = (
        "projected throughput = efficiency on the measured device x the target's roofline bound "
        "(band: min..max efficiency over the pipeline family's cells)"
    )
    if phases:
        title += (
            "; a generation is two rows: prefill (items: prompt tokens, latency: TTFT) and decode "
            "(items/s: the batch's tokens/s, latency: TPOT); sample: images, latency: one sampling run"
        )
    table, left_out = fit_table(
        columns, rows, width, title=title, title_justify="left", elsewhere=f"the CSV has them ({csv})"
    )
    out: list[Any] = [
        Text.from_markup(f"[bold]projection[/] of {from_run}: calibrated on ").append(source.how)
    ]
    out += [table, *below(*notes.lines(), left_out)]
    if with_check:
        _, target, path = check
        rows_checked = frame[(frame["target"] == target.label) & frame["error_pct"].notna()]
        if rows_checked.empty:
            summary = f"--check {path}: no projected cell matches a measured ok cell on {target.label}"
        else:
            errors = rows_checked["error_pct"].astype(float).abs()
            in_band = rows_checked["in_band"].astype("boolean").fillna(False).astype(bool)
            summary = (
                f"--check {path} ({target.label}): {len(rows_checked)} {'rows' if phases else 'cells'}, "
                "median |error| "
                f"{percent(errors.median(), signed=False)}, max |error| {percent(errors.max(), signed=False)}, "
                f"{int(in_band.sum())}/{len(rows_checked)} measured values inside the band"
                + (" [holdout]" if holdout else "")
            )
        out += below(summary)
    out += below(f"table written to {csv}")
    return out

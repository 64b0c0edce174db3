"""Tables and the plot of the hardware commands: the device catalogue (its kinds and sources), a measured peak,
a projection and its throughput-vs-price figure.

Each table builder takes the console's width and returns what to print, in order:
tables, then plain text blocks (numbered notes, the columns left out at this
width). What matters most stays at any width: the device key and name and the
fp32/fp16/bf16 peaks, memory and bandwidth; a projection's target, model,
pipeline, batch and items/s. Long text (sources, reasons) is a numbered note.
A figure the vendor does not publish, or the hardware lacks, shows as "-"; ``--sources`` says which.
``projection_figure`` imports matplotlib inside itself.
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


#: what the sources table says of a figure the vendor does not publish (``missing = true`` in the catalogue)
NOT_PUBLISHED = "not published"


def display_value(figure: Figure | None, unit: str, digits: int = 4) -> str:
    """A figure in ``unit`` (one of those UNITS accepts), '-' when absent."""
    return "-" if figure is None else num(figure.value / _FACTORS[unit], digits)


def _shown(spec: DeviceSpec, name: str, unit: str, prefix: str = "") -> str:
    """A device's figure ``name`` in ``unit``, '-' where there is none (``--sources`` says whether the vendor
    publishes none or the hardware lacks it)."""
    figure = getattr(spec, name)
    return "-" if figure is None else prefix + display_value(figure, unit)


# ----------------------------------------------------------------- devices
_PEAK_DROP = {"fp32": 0, "tf32": 2, "fp16": 0, "bf16": 0, "fp8": 2, "int8": 1}


def _device_row(key: str, spec: DeviceSpec) -> list[Cell]:
    peaks: list[Cell] = []
    for precision in PRECISIONS:
        fig = spec.peak[precision]
        unit = "TOPS" if precision == "int8" else "TFLOPS"
        peaks.append("-" if fig is None else display_value(fig, unit) + ("*" if fig.sparse else ""))
    name = spec.name if spec.per != "core" or "per" in spec.name else f"{spec.name} (per core)"
    kind = spec.kind + ("/core" if spec.per == "core" else "")
    memory = display_value(spec.memory, "GiB") + ("s" if spec.shared_memory else "")
    tdp = _shown(spec, "tdp", "W") + ("m" if spec.power_modes else "")
    return [
        key, name, kind, *peaks, memory, display_value(spec.memory_bandwidth, "GB/s"),
        tdp, _shown(spec, "price", "USD", "~"), _shown(spec, "cloud_price", "USD/h", "~"),
    ]  # fmt: skip


def devices_tables(catalog: Catalog, width: int, sources: bool = False) -> list[Any]:
    """The catalogue at ``width`` columns, then its kinds; with ``sources``, every figure's source as numbered
    notes and the published results behind each kind's prior."""
    columns = [
        Column("key", fixed=True), Column("name"), Column("kind", fixed=True, drop=3),
        *(Column.number(p, drop=_PEAK_DROP[p]) for p in PRECISIONS),
        Column.number("memory GiB"), Column.number("bandwidth GB/s"), Column.number("TDP W", drop=3),
        Column.number("price USD", drop=1), Column.number("cloud USD/h", drop=2),
    ]  # fmt: skip
    rows = [_device_row(key, spec) for key, spec in catalog.devices.items()]
    title = (
        f"device catalogue {catalog.version} ({', '.join(catalog.files)}): dense peaks, TFLOPS (int8: TOPS); "
        "* = the vendor also quotes 2x with sparsity; - = no figure: unsupported, or not published (`--sources`)"
    )
    table, left_out = fit_table(
        columns, rows, width, title=title, title_justify="left", elsewhere="a wider console shows them"
    )
    footer = (
        "prices are indicative (rounded; dated in the catalogue); memory 's': shared with the CPU (the OS keeps "
        "part of it); TDP 'm': power modes (KEY@MODE); `--sources` lists every figure's source"
    )
    out: list[Any] = [table, *below(left_out, footer)]
    out += kinds_tables(catalog, width)
    if sources:
        out += sources_tables(catalog, width)
        out += prior_tables(catalog, width)
    return out


def kinds_tables(catalog: Catalog, width: int) -> list[Any]:
    """The kinds of the listed devices: stack, whether genbench measures on them, precisions, prior efficiency."""
    shown = dict.fromkeys(spec.kind for spec in catalog.devices.values())
    notes = Notes()
    rows: list[list[Cell]] = []
    for kind in shown:
        info = catalog.kinds.get(kind)
        if info is None:
            continue
        prior = info.prior
        prior_text = (
            "-" if prior is None else f"{num(prior.value, 3)} ({num(prior.lo, 2)}..{num(prior.hi, 2)})"
        )
        modes = [
            f"{s.key}@{'|'.join(s.power_modes)}"
            for s in catalog.devices.values()
            if s.kind == kind and s.power_modes
        ]
        rows.append(
            [
                kind, info.stack, notes.ref(info.measurable_note) if not info.measurable else info.measurable_note,
                ", ".join(info.precisions), prior_text if not info.measurable else "measured",
                ", ".join(modes),
            ]
        )  # fmt: skip
    if not rows:
        return []
    columns = [
        Column("kind", fixed=True), Column("software stack", min_width=20), Column("genbench measures it?", min_width=12),
        Column("native precisions", drop=2), Column("efficiency used", fixed=True), Column("power modes", drop=1),
    ]  # fmt: skip
    title = (
        "kinds: a kind genbench cannot measure on is projected with its prior efficiency (median, and spread, of "
        "published results as a fraction of peak), rows `uncalibrated`"
    )
    table, left_out = fit_table(columns, rows, width, title=title, title_justify="left")
    return [table, *below(*(f"{line}" for line in notes.lines()), left_out)]


def prior_tables(catalog: Catalog, width: int) -> list[Any]:
    """Every published result behind the priors: items/s, devices, work per item, the peak, the efficiency."""
    notes = Notes()
    rows: list[list[Cell]] = []
    kinds = dict.fromkeys(spec.kind for spec in catalog.devices.values())
    for kind in kinds:
        info = catalog.kinds.get(kind)
        if info is None or info.prior is None:
            continue
        for point in info.prior.points:
            rows.append(
                [
                    kind, point.result, num(point.items_s, 6), str(point.devices), num(point.gflop_per_item, 6),
                    num(point.peak_tflops, 5), num(point.efficiency, 3), notes.ref(point.source),
                ]
            )  # fmt: skip
    if not rows:
        return []
    columns = [
        Column("kind", fixed=True), Column("published result", min_width=20), Column.number("items/s"),
        Column.number("devices"), Column.number("GFLOP/item", drop=2), Column.number("peak T/device", drop=2),
        Column.number("of peak"), Column("source", fixed=True),
    ]  # fmt: skip
    table, left_out = fit_table(columns, rows, width, title="priors", title_justify="left")
    return [table, *below(left_out, *notes.lines())]


def sources_tables(catalog: Catalog, width: int) -> list[Any]:
    """Every figure with its value and date; the source texts (long, often shared) as numbered notes."""
    notes = Notes()
    rows: list[list[Cell]] = []
    for key, spec in catalog.devices.items():
        figures: list[tuple[str, Figure | None]] = [(f"peak.{p}", spec.peak[p]) for p in PRECISIONS]
        figures += [
            (f, getattr(spec, f)) for f in ("memory", "memory_bandwidth", "tdp", "price", "cloud_price")
        ]
        if spec.os_reserve is not None:
            figures.append(("os_reserve", spec.os_reserve))
        figures += [(f"power_modes.{m}.power", mode.power) for m, mode in spec.power_modes.items()]
        for name, fig in figures:
            if fig is None and name in spec.missing:
                rows.append([key, name, NOT_PUBLISHED, "", notes.ref(spec.missing[name])])
                continue
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
        str(r.calibration) if shown else "-",
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
        Column.number("band", drop=1), Column("calibration", fixed=True, drop=2),
        Column.number("latency ms", drop=2), Column.number("peak", drop=5),
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
        "(band: min..max efficiency over the pipeline family's cells); `uncalibrated` rows (kinds genbench "
        "cannot measure) use the kind's published prior efficiency and a wide band instead"
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


# ----------------------------------------------------------------- project: the plot
#: kinds in the order their colours are given, so a kind keeps its colour from one plot to the next
KIND_ORDER = ("gpu", "cpu", "tpu", "accelerator", "fpga", "edge-gpu")


def _best_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Per panel (model, size, phase) and target: the ok row with the highest projected items/s."""
    ok = frame[
        (frame["status"] == "ok") & pd.to_numeric(frame["throughput_items_s"], errors="coerce").notna()
    ]
    if ok.empty:
        return ok
    ok = ok.assign(throughput_items_s=pd.to_numeric(ok["throughput_items_s"]))
    index = ok.groupby(["model", "size", "phase", "target"], sort=False)["throughput_items_s"].idxmax()
    return ok.loc[index.to_numpy()]


def projection_figure(frame: pd.DataFrame) -> bytes | None:
    """Projected throughput against purchase price, one point per target and panel, every kind coloured.

    A panel is one model, size and phase; a target's point is its best projected row there
    (the label names pipeline and batch), with the band as an error bar. Uncalibrated targets
    (kinds genbench cannot measure) are hollow and labelled so. Targets the catalogue gives
    no purchase price for sit in a strip of their own beside the price axis rather than
    being left out, so every kind shows with its band. None when no row has a projection.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from bench.render.figure import FONT, MAX_WIDTH_IN, colors_for, figure_png, plain_log_labels

    best = _best_rows(frame)
    if best.empty:
        return None
    panels = list(dict.fromkeys(zip(best["model"], best["size"], best["phase"], strict=True)))
    kinds = [k for k in KIND_ORDER if k in set(best["target_kind"])] + sorted(
        set(best["target_kind"]) - set(KIND_ORDER)
    )
    colors = colors_for(list(KIND_ORDER) + [k for k in kinds if k not in KIND_ORDER])
    fig = Figure(figsize=(min(MAX_WIDTH_IN, 9.0), 3.6 * len(panels)), layout="constrained")
    grid = fig.add_gridspec(len(panels), 2, width_ratios=(3, 2))
    for i, (model, size, phase) in enumerate(panels):
        rows = best[(best["model"] == model) & (best["size"] == size) & (best["phase"] == phase)]
        priced_ax = fig.add_subplot(grid[i, 0])
        unpriced_ax = fig.add_subplot(grid[i, 1], sharey=priced_ax)
        price = pd.to_numeric(rows["items_s_per_kusd"], errors="coerce")
        priced = rows[price.notna()]
        unpriced = rows[price.isna()]
        for ax, sub, xs in (
            (
                priced_ax,
                priced,
                1000.0 * priced["throughput_items_s"] / pd.to_numeric(priced["items_s_per_kusd"]),
            ),
            (unpriced_ax, unpriced, pd.Series(range(len(unpriced)), index=unpriced.index, dtype=float)),
        ):
            for (_, r), x in zip(sub.iterrows(), xs, strict=True):
                color = colors[r["target_kind"]]
                y, lo, hi = (
                    float(r[c])
                    for c in ("throughput_items_s", "throughput_items_s_lo", "throughput_items_s_hi")
                )
                uncal = r["calibration"] == "uncalibrated"
                ax.errorbar(
                    [x], [y], yerr=[[y - lo], [hi - y]], fmt="o", color=color, ecolor=color, capsize=3,
                    markerfacecolor="white" if uncal else color, markersize=6, elinewidth=1.2,
                )  # fmt: skip
                label = f"{r['target']}{' (uncalibrated)' if uncal else ''}\n{r['pipeline']} b{int(r['batch_size'])}"
                ax.annotate(
                    label,
                    (x, y),
                    xytext=(5, 3),
                    textcoords="offset points",
                    fontsize=FONT - 1,
                    color="#222222",
                )
        item = str(rows["item"].iloc[0]) if "item" in rows and len(rows) else "items"
        priced_ax.set_yscale("log")
        priced_ax.set_ylabel(f"projected {item}/s ({phase})", fontsize=8)
        priced_ax.set_title(f"{model} {size}: best projected row per target", fontsize=9)
        if not priced.empty:
            priced_ax.set_xscale("log")
            plain_log_labels(priced_ax.xaxis)
            priced_ax.margins(x=0.3)
        priced_ax.set_xlabel("purchase price, USD (indicative)", fontsize=8)
        plain_log_labels(priced_ax.yaxis)
        unpriced_ax.set_xticks([])
        unpriced_ax.set_xlim(-0.5, max(len(unpriced), 1) + 0.5)
        unpriced_ax.set_xlabel("no purchase price\nin the catalogue", fontsize=8)
        unpriced_ax.tick_params(labelleft=False)
    handles = [Line2D([], [], marker="o", linestyle="", color=colors[k], label=k) for k in kinds]
    handles += [
        Line2D([], [], marker="o", linestyle="", color="#555555", label="measured efficiency"),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color="#555555",
            markerfacecolor="white",
            label="uncalibrated (prior)",
        ),
    ]
    fig.legend(handles=handles, loc="outside lower center", fontsize=FONT, ncols=min(len(handles), 5))
    undrawn = [t for t in dict.fromkeys(frame["target"]) if t not in set(best["target"])]
    title = "projected throughput vs price (error bars: the band)"
    if undrawn:  # a target without a projected row is named, never silently absent
        title += f"\nnot drawn, no projected row (the table says why): {', '.join(undrawn)}"
    fig.suptitle(title, fontsize=9)
    return figure_png(fig)

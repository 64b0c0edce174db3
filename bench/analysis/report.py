"""One self-contained HTML page (or Markdown) that puts devices side by side.

The "CPU vs GPU vs TensorRT" page: for each model, the throughput of every
pipeline on every device and its speedup over fp32 eager *on the same device*
(a speedup across devices mixes two questions), latency against batch size
(p50, whiskers to p90/p99), throughput against PSNR with each device's Pareto
front, peak memory and energy per item where measured; then the environment of
each run and every cell that did not run, with its reason.

Self-contained means viewable offline: plots are PNGs embedded as base64 data
URIs, styles are inline, nothing is fetched. Plots are drawn with matplotlib's
object API (``matplotlib.figure.Figure``), which renders through Agg without
touching pyplot's global backend, and matplotlib is imported inside the plot
functions only, so ``import bench`` stays fast and ``--markdown`` works without
it. Tables are built once (``Table``) and rendered to both HTML and Markdown, so
the two formats always hold the same numbers.

PSNR is inf for bit-identical output: in tables it reads "exact"; in the
speed/quality plot it is drawn at a clipped position right of every finite
value, on a tick labelled "exact".
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.results.merge import Run, RunError

FP32_EAGER = "fp32"


@dataclass
class Table:
    """A titled table of already formatted strings; ``align`` holds 'l' or 'r' per column."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    align: list[str] = field(default_factory=list)
    css_class: str = ""

    def __post_init__(self) -> None:
        if not self.align:
            self.align = ["l"] * len(self.headers)


@dataclass
class Section:
    """A model's part of the report: its tables, and its figures as (caption, PNG bytes)."""

    title: str
    anchor: str
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, bytes]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ data
def combine(runs: list[Run]) -> pd.DataFrame:
    """All cells of all runs in one frame, with ``device_label``, ``peak_mb`` and ``speedup``."""
    frames = [run.cells for run in runs if not run.cells.empty]
    if not frames:
        raise RunError("no cells in " + ", ".join(str(r.path) for r in runs))
    cells = pd.concat(frames, ignore_index=True)
    cells["device_label"] = device_labels(cells)
    peak = cells["peak_device_mem_mb"].astype("float64")
    cells["peak_mb"] = peak.where(peak.notna(), cells["peak_host_rss_mb"].astype("float64"))
    cells["speedup"] = speedups(cells)
    return cells


def device_labels(cells: pd.DataFrame) -> pd.Series:
    """A readable name per device: its device_name, plus host, device and run only where needed to tell apart."""
    labels = cells["device_name"].fillna(cells["device"]).fillna("unknown").astype(str)
    for extra, fmt in (("host", "{} @ {}"), ("device", "{} ({})"), ("run_id", "{} [{}]")):
        values = cells[extra].fillna("?").astype(str)
        ambiguous = values.groupby(labels).transform("nunique") > 1
        labels = labels.where(
            ~ambiguous, [fmt.format(lab, val) for lab, val in zip(labels, values, strict=True)]
        )
    return labels


def speedups(cells: pd.DataFrame) -> pd.Series:
    """Throughput over fp32 eager's on the same device label, model, size and batch; NaN without one."""
    group = ["device_label", "model", "size", "batch_size"]
    ok = cells["status"] == "ok"
    base = (
        cells[ok & (cells["pipeline"] == FP32_EAGER)]
        .drop_duplicates(group)
        .set_index(group)["throughput_items_s"]
    )
    keys = pd.MultiIndex.from_frame(cells[group])
    reference = base.reindex(keys).to_numpy(dtype=float)
    return pd.Series(cells["throughput_items_s"].to_numpy(dtype=float) / reference, index=cells.index).where(
        ok
    )


# ------------------------------------------------------------------ formatting
def _num(value: Any, spec: str = ".3g") -> str:
    if value is None or value is pd.NA:
        return "-"
    value = float(value)
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if spec == ".3g" and abs(value) >= 1000:
        return f"{value:,.0f}"  # 1,030 rather than 1.03e+03
    return format(value, spec)


def _psnr(value: Any) -> str:
    if value is None or value is pd.NA or math.isnan(float(value)):
        return "-"
    value = float(value)
    if math.isinf(value):
        return "exact" if value > 0 else "non-finite"
    return f"{value:.1f}"


def _ordered(values: Iterable[Any]) -> list[Any]:
    """Unique values in first-seen order (the run's own order of pipelines and devices)."""
    return list(dict.fromkeys(values))


# ------------------------------------------------------------------ tables
def environment_table(runs: list[Run]) -> Table:
    table = Table(
        "Environment of each run",
        ["run", "host", "device", "CPU", "GPUs", "torch", "python", "git sha", "captured at"],
    )
    for run in runs:
        sources = run.sources or [{}]
        for env in sources:
            cpu = env.get("cpu") if isinstance(env.get("cpu"), dict) else {}
            cpu_text = str(cpu.get("model", "-"))
            if cpu.get("logical_cores"):
                cpu_text += (
                    f" ({cpu.get('logical_cores')} cores, {cpu.get('torch_threads', '?')} torch threads)"
                )
            gpus = env.get("gpus") if isinstance(env.get("gpus"), list) else []
            gpu_text = ", ".join(str(g.get("name", "?")) for g in gpus if isinstance(g, dict)) or "none"
            packages = env.get("packages") if isinstance(env.get("packages"), dict) else {}
            table.rows.append(
                [
                    str(env.get("run_id") or run.name),
                    str(env.get("hostname", "-")),
                    str(env.get("device", "-")),
                    cpu_text,
                    gpu_text,
                    str(packages.get("torch", "-")),
                    str(env.get("python", "-")),
                    str(env.get("git_sha", "-"))[:12],
                    str(env.get("captured_at", "-")),
                ]
            )
        if not run.sources:
            table.rows[-1][1] = f"(no env.json in {run.path})"
    return table


def throughput_table(model_cells: pd.DataFrame, item: str) -> Table:
    """Pipelines x batch sizes as rows, devices side by side as column pairs (items/s, x fp32)."""
    devices = _ordered(model_cells["device_label"])
    headers = ["pipeline", "batch"]
    for device in devices:
        headers += [f"{device} {item}/s", f"{device} x fp32"]
    table = Table("Throughput and speedup over fp32 eager on the same device", headers, css_class="wide")
    table.align = ["l", "r"] + ["r"] * (2 * len(devices))
    indexed = model_cells.set_index(["pipeline", "batch_size", "device_label"])
    for batch in sorted(_ordered(model_cells["batch_size"])):
        for pipeline in _ordered(model_cells["pipeline"]):
            row = [pipeline, str(batch)]
            present = False
            for device in devices:
                key = (pipeline, batch, device)
                if key in indexed.index:
                    cell = indexed.loc[[key]].iloc[0]
                    present = True
                    if cell["status"] == "ok":
                        speedup = _num(cell["speedup"], ".2f")
                        row += [
                            _num(cell["throughput_items_s"], ",.1f"),
                            speedup + ("x" if speedup != "-" else ""),
                        ]
                    else:
                        row += [str(cell["status"]), ""]
                else:
                    row += ["", ""]
            if present:
                table.rows.append(row)
    return table


def details_table(model_cells: pd.DataFrame) -> Table:
    table = Table(
        "Latency, memory, fidelity and energy per cell",
        [
            "device",
            "pipeline",
            "batch",
            "runtime",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "peak MB",
            "PSNR dB",
            "J/item",
            "status",
        ],
        align=["l", "l", "r", "l", "r", "r", "r", "r", "r", "r", "l"],
    )
    for row in model_cells.sort_values(["device_label", "batch_size"], kind="stable").itertuples(index=False):
        status = str(row.status)
        if status == "ok" and not pd.isna(row.noisy) and bool(row.noisy):
            status = "ok (noisy)"
        table.rows.append(
            [
                str(row.device_label), str(row.pipeline), str(row.batch_size),
                "-" if pd.isna(row.runtime) else str(row.runtime),
                _num(row.latency_ms_p50), _num(row.latency_ms_p90), _num(row.latency_ms_p99),
                _num(row.peak_mb, ".0f"), _psnr(row.psnr_db), _num(row.energy_j_per_item), status,
            ]
        )  # fmt: skip
    return table


def failures_table(cells: pd.DataFrame) -> Table:
    table = Table(
        "Cells that did not run",
        ["model", "size", "device", "pipeline", "batch", "status", "reason"],
        align=["l", "l", "l", "l", "r", "l", "l"],
        css_class="failures",
    )
    bad = cells[cells["status"] != "ok"]
    for row in bad.itertuples(index=False):
        table.rows.append(
            [
                str(row.model), str(row.size), str(row.device_label), str(row.pipeline), str(row.batch_size),
                str(row.status), "" if pd.isna(row.reason) else str(row.reason),
            ]
        )  # fmt: skip
    return table


# ------------------------------------------------------------------ plots
def _figure_png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _colors(devices: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {d: cmap(i % 10) for i, d in enumerate(devices)}


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def _plain_log_labels(axis: Any) -> None:
    """Log axes labelled with plain numbers (1,000 not 10^3): decades, or finer steps on a short axis."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.axes.autoscale_view()  # limits are computed lazily; the choice of ticks needs them now
    low, high = sorted(axis.get_view_interval())
    decades = math.log10(high / low) if low > 0 and high > 0 else 3.0
    if decades > 2:
        subs: tuple[float, ...] = (1.0,)
    elif decades > 0.7:
        subs = (1.0, 2.0, 5.0)
    else:
        subs = tuple(float(i) for i in range(1, 10))
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def throughput_figure(model_cells: pd.DataFrame, item: str) -> bytes:
    """Grouped bars per batch size: pipelines on x, one bar per device, labelled with speedup over fp32."""
    from matplotlib.figure import Figure

    ok = model_cells[model_cells["status"] == "ok"]
    devices = _ordered(model_cells["device_label"])
    pipelines = _ordered(model_cells["pipeline"])
    batches = sorted(_ordered(model_cells["batch_size"]))
    colors = _colors(devices)
    rows, cols = _grid(len(batches))
    fig = Figure(figsize=(4.6 * cols, 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    width = 0.8 / max(len(devices), 1)
    values = ok["throughput_items_s"].to_numpy(dtype=float)
    log = len(values) > 0 and values.min() > 0 and values.max() / values.min() > 30
    failed = model_cells[model_cells["status"] != "ok"]
    for ax, batch in zip(axes, batches, strict=False):
        sub = ok[ok["batch_size"] == batch].set_index(["pipeline", "device_label"])
        for d, device in enumerate(devices):
            xs, ys, labels = [], [], []
            for p, pipeline in enumerate(pipelines):
                if (pipeline, device) in sub.index:
                    cell = sub.loc[[(pipeline, device)]].iloc[0]
                    xs.append(p + (d - (len(devices) - 1) / 2) * width)
                    ys.append(float(cell["throughput_items_s"]))
                    labels.append(_num(cell["speedup"], ".2f") + "x")
            bars = ax.bar(xs, ys, width=width * 0.95, color=colors[device], label=device)
            ax.bar_label(bars, labels=labels, fontsize=7, padding=1, rotation=90 if len(devices) > 2 else 0)
        # a cell that did not run gets its status where its bar would be, so a gap is never silent
        for row in failed[failed["batch_size"] == batch].itertuples(index=False):
            x = (
                pipelines.index(row.pipeline)
                + (devices.index(row.device_label) - (len(devices) - 1) / 2) * width
            )
            ax.text(x, 0.02, str(row.status), transform=ax.get_xaxis_transform(), rotation=90, ha="center",
                    va="bottom", fontsize=7, color=colors[row.device_label])  # fmt: skip
        ax.set_xticks(range(len(pipelines)), pipelines, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(pipelines) - 0.4)  # every pipeline has its slot, bars or not
        ax.set_title(f"batch {batch}", fontsize=9)
        ax.set_ylabel(f"{item}/s" + (" (log)" if log else ""))
        if log:
            ax.set_yscale("log")
            _plain_log_labels(ax.yaxis)
        ax.margins(y=0.18)
    for ax in axes[len(batches) :]:
        ax.set_visible(False)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", fontsize=7, ncols=min(len(devices), 3))
    fig.suptitle("throughput (bar labels: speedup over fp32 eager on the same device)", fontsize=10)
    return _figure_png(fig)


def latency_figure(model_cells: pd.DataFrame) -> bytes:
    """p50 latency against batch size, one panel per device, whiskers up to p99 and a tick at p90."""
    from matplotlib.figure import Figure

    ok = model_cells[model_cells["status"] == "ok"]
    devices = _ordered(model_cells["device_label"])
    pipelines = _ordered(model_cells["pipeline"])
    rows, cols = _grid(len(devices))
    fig = Figure(figsize=(4.6 * cols, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    for ax, device in zip(axes, devices, strict=False):
        sub = ok[ok["device_label"] == device]
        for p, pipeline in enumerate(pipelines):
            line = sub[sub["pipeline"] == pipeline].sort_values("batch_size")
            if line.empty:
                continue
            x = line["batch_size"].to_numpy(dtype=float)
            p50 = line["latency_ms_p50"].to_numpy(dtype=float)
            p90 = line["latency_ms_p90"].to_numpy(dtype=float)
            p99 = line["latency_ms_p99"].to_numpy(dtype=float)
            color = cmap(p % 10)
            upper = [
                max(hi - mid, 0.0) if not math.isnan(hi) else 0.0 for hi, mid in zip(p99, p50, strict=True)
            ]
            ax.errorbar(
                x, p50, yerr=[[0.0] * len(x), upper], color=color, marker="o", ms=4, capsize=3, label=pipeline
            )
            ax.plot(x, p90, linestyle="none", marker="_", ms=10, color=color)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        _plain_log_labels(ax.yaxis)
        batches = sorted(_ordered(sub["batch_size"])) or [1]
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.set_xlabel("batch size")
        ax.set_ylabel("latency ms (log)")
        ax.set_title(device, fontsize=9)
        ax.legend(fontsize=7)
    for ax in axes[len(devices) :]:
        ax.set_visible(False)
    fig.suptitle("latency: p50, whisker to p99, tick at p90", fontsize=10)
    return _figure_png(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both PSNR (x) and throughput (y), sorted by x descending."""
    front: list[tuple[float, float]] = []
    best_y = -math.inf
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if y > best_y:
            front.append((x, y))
            best_y = y
    return front


def _label_above(xs: list[float], ys: list[float]) -> list[bool]:
    """Label each point above it unless its nearest neighbour (x linear, y log) sits above it."""
    if len(xs) < 2:
        return [True] * len(xs)
    span_x = (max(xs) - min(xs)) or 1.0
    logs = [math.log10(max(y, 1e-12)) for y in ys]
    span_y = (max(logs) - min(logs)) or 1.0
    above = []
    for i in range(len(xs)):
        j = min(
            (k for k in range(len(xs)) if k != i),
            key=lambda k: ((xs[k] - xs[i]) / span_x) ** 2 + ((logs[k] - logs[i]) / span_y) ** 2,
        )
        above.append(logs[j] <= logs[i])
    return above


def pareto_figure(model_cells: pd.DataFrame, item: str) -> bytes | None:
    """Best throughput (over batch sizes) against PSNR, per device and pipeline, with each device's front."""
    from matplotlib.figure import Figure

    ok = model_cells[(model_cells["status"] == "ok") & model_cells["psnr_db"].notna()]
    if ok.empty:
        return None
    best = ok.sort_values("throughput_items_s", ascending=False).drop_duplicates(["device_label", "pipeline"])
    psnr = best["psnr_db"].to_numpy(dtype=float)
    finite = psnr[~(psnr == math.inf) & ~(psnr == -math.inf)]
    top = max(float(finite.max()) if len(finite) else 40.0, 40.0) + 10.0
    bottom = (float(finite.min()) if len(finite) else top - 20.0) - 10.0
    devices = _ordered(model_cells["device_label"])
    colors = _colors(devices)
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax = fig.subplots()
    for device in devices:
        sub = best[best["device_label"] == device]
        if sub.empty:
            continue
        xs = [top if v == math.inf else bottom if v == -math.inf else float(v) for v in sub["psnr_db"]]
        ys = sub["throughput_items_s"].to_numpy(dtype=float).tolist()
        ax.scatter(xs, ys, color=colors[device], label=device, zorder=3)
        for x, y, name, above in zip(xs, ys, sub["pipeline"], _label_above(xs, ys), strict=True):
            ax.annotate(
                str(name), (x, y), textcoords="offset points", xytext=(4, 5 if above else -11), fontsize=7
            )
        front = pareto_front(list(zip(xs, ys, strict=True)))
        ax.plot(
            [p[0] for p in front],
            [p[1] for p in front],
            drawstyle="steps-post",
            color=colors[device],
            alpha=0.5,
        )
    ticks = [t for t in ax.get_xticks() if bottom + 8 < t < top - 8]  # keep clear of the clipped ticks
    labels = [f"{t:g}" for t in ticks]
    if (psnr == math.inf).any():
        ticks.append(top)
        labels.append("exact")
    if (psnr == -math.inf).any():
        ticks.insert(0, bottom)
        labels.insert(0, "non-finite")
    ax.set_xticks(ticks, labels)
    ax.set_xlim(bottom + (5 if not (psnr == -math.inf).any() else -5), top + 8)
    ax.set_yscale("log")
    _plain_log_labels(ax.yaxis)
    ax.margins(y=0.25)
    ax.set_xlabel("PSNR dB against fp32 eager (higher is closer)")
    ax.set_ylabel(f"best {item}/s over batch sizes (log)")
    ax.set_title("speed / quality: up and right is better; lines are each device's Pareto front", fontsize=10)
    ax.legend(fontsize=7)
    return _figure_png(fig)


def bars_figure(model_cells: pd.DataFrame, column: str, ylabel: str, title: str) -> bytes | None:
    """One bar per pipeline and device, at the largest batch size that pipeline ran at on that device."""
    from matplotlib.figure import Figure

    ok = model_cells[(model_cells["status"] == "ok") & model_cells[column].notna()]
    if ok.empty:
        return None
    ok = ok.sort_values("batch_size").drop_duplicates(["device_label", "pipeline"], keep="last")
    devices = _ordered(model_cells["device_label"])
    pipelines = [p for p in _ordered(model_cells["pipeline"]) if p in set(ok["pipeline"])]
    colors = _colors(devices)
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(devices), 1)
    for d, device in enumerate(devices):
        sub = ok[ok["device_label"] == device].set_index("pipeline")
        names = [name for name in pipelines if name in sub.index]
        if not names:
            continue
        largest = int(sub["batch_size"].max())
        xs = [pipelines.index(name) + (d - (len(devices) - 1) / 2) * width for name in names]
        ys = [float(sub.loc[name, column]) for name in names]
        labels = [
            _num(y)
            + (
                ""
                if int(sub.loc[name, "batch_size"]) == largest
                else f" (b{int(sub.loc[name, 'batch_size'])})"
            )
            for name, y in zip(names, ys, strict=True)
        ]
        bars = ax.bar(xs, ys, width=width * 0.95, color=colors[device], label=f"{device} (batch {largest})")
        ax.bar_label(bars, labels=labels, fontsize=7, padding=1)
    ax.set_xticks(range(len(pipelines)), pipelines, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.margins(y=0.15)
    fig.legend(loc="outside lower center", fontsize=7, ncols=min(len(devices), 3))
    return _figure_png(fig)


# ------------------------------------------------------------------ assembly
def model_sections(cells: pd.DataFrame, *, plots: bool) -> list[Section]:
    sections = []
    for (model, size), group in cells.groupby(["model", "size"], sort=False):
        item = str(group["item"].dropna().iloc[0]) if group["item"].notna().any() else "item"
        section = Section(title=f"{model} ({size})", anchor=f"model-{model}-{size}")
        section.tables += [throughput_table(group, item), details_table(group)]
        if group["energy_j_per_item"].notna().any():
            section.notes.append("energy per item is measured where the device reports power (NVML).")
        else:
            section.notes.append(
                "energy per item: not measured on these devices (needs NVML power readings)."
            )
        if plots:
            if (group["status"] == "ok").any():
                section.figures.append(
                    (f"{model} throughput per pipeline and device", throughput_figure(group, item))
                )
                section.figures.append((f"{model} latency against batch size", latency_figure(group)))
            for caption, png in (
                (f"{model} speed against quality", pareto_figure(group, item)),
                (
                    f"{model} peak memory",
                    bars_figure(
                        group, "peak_mb", "peak MB", "peak memory (device memory on GPUs, host RSS on CPU)"
                    ),
                ),
                (
                    f"{model} energy per item",
                    bars_figure(group, "energy_j_per_item", "J per item", "energy per item"),
                ),
            ):
                if png is not None:
                    section.figures.append((caption, png))
        sections.append(section)
    return sections


@dataclass
class Report:
    runs: list[Run]
    cells: pd.DataFrame
    environment: Table
    sections: list[Section]
    failures: Table

    @property
    def title(self) -> str:
        devices = _ordered(self.cells["device_label"])
        return "genbench report: " + " vs ".join(devices)


def build_report(runs: list[Run], *, plots: bool = True) -> Report:
    cells = combine(runs)
    return Report(
        runs, cells, environment_table(runs), model_sections(cells, plots=plots), failures_table(cells)
    )


# ------------------------------------------------------------------ rendering
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto; max-width: 1300px;
       color: #1d232a; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { margin-top: 2.2rem; border-bottom: 2px solid #d6dde4; padding-bottom: .2rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
table { border-collapse: collapse; font-size: .82rem; margin: .3rem 0 1rem; }
th, td { border: 1px solid #d6dde4; padding: .22rem .5rem; }
th { background: #eef2f6; text-align: left; } td.r { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #f8fafb; }
.scroll { overflow-x: auto; }
figure { margin: .6rem 0 1.2rem; } figure img { max-width: 100%; border: 1px solid #e3e8ed; }
figcaption { font-size: .78rem; color: #5a6570; }
.meta, .note { color: #5a6570; font-size: .85rem; }
nav a { margin-right: 1rem; }
.status-error, .status-oom { color: #b3261e; font-weight: 600; } .status-skipped { color: #8a6d00; }
"""


def _html_table(table: Table, heading: str | None = "h3") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = []
    for row in table.rows:
        tds = []
        for value, align, header in zip(row, table.align, table.headers, strict=True):
            cls = ["r"] if align == "r" else []
            if header == "status" and value in ("error", "oom", "skipped"):
                cls.append(f"status-{value}")
            attr = f' class="{" ".join(cls)}"' if cls else ""
            tds.append(f"<td{attr}>{html.escape(value)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    if not table.rows:
        body.append(f'<tr><td colspan="{len(table.headers)}">none</td></tr>')
    css = f' class="{table.css_class}"' if table.css_class else ""
    title = f"<{heading}>{html.escape(table.title)}</{heading}>\n" if heading else ""
    return (
        f'{title}<div class="scroll"><table{css}>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def to_html(report: Report) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(report.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
        f'<p class="meta">{len(report.runs)} run(s): '
        + html.escape(", ".join(r.name for r in report.runs))
        + f"; {len(report.cells)} cells, {int((report.cells['status'] != 'ok').sum())} did not run; "
        + f"generated {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}</p>",
        "<nav>"
        + "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in report.sections)
        + '<a href="#failures">cells that did not run</a><a href="#environment">environment</a></nav>',
    ]
    for section in report.sections:
        parts.append(f'<h2 id="{section.anchor}">{html.escape(section.title)}</h2>')
        parts += [_html_table(t) for t in section.tables]
        for note in section.notes:
            parts.append(f'<p class="note">{html.escape(note)}</p>')
        for caption, png in section.figures:
            data = base64.b64encode(png).decode("ascii")
            parts.append(
                f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    parts.append('<h2 id="failures">Cells that did not run</h2>')
    parts.append(_html_table(report.failures, heading=None))
    parts.append('<h2 id="environment">Environment</h2>')
    parts.append(_html_table(report.environment, heading=None))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _md_table(table: Table) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [f"### {table.title}", "", "| " + " | ".join(esc(h) for h in table.headers) + " |"]
    lines.append("|" + "|".join("--:" if a == "r" else "---" for a in table.align) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(esc(v) for v in row) + " |")
    if not table.rows:
        lines.append("| none |" + " |" * (len(table.headers) - 1))
    return "\n".join(lines)


def to_markdown(report: Report) -> str:
    parts = [
        f"# {report.title}",
        "",
        f"{len(report.runs)} run(s): {', '.join(r.name for r in report.runs)}",
        "",
    ]
    for section in report.sections:
        parts += [f"## {section.title}", ""]
        for table in section.tables:
            parts += [_md_table(table), ""]
        parts += [f"_{note}_" for note in section.notes] + [""]
    parts += ["## Cells that did not run", "", _md_table(report.failures), ""]
    parts += ["## Environment", "", _md_table(report.environment), ""]
    return "\n".join(parts)


def write_report(runs: list[Run], html_path: Path | None, markdown_path: Path | None) -> Report:
    """Build once, write the formats asked for; plots are drawn only for HTML."""
    report = build_report(runs, plots=html_path is not None)
    if html_path is not None:
        Path(html_path).write_text(to_html(report), encoding="utf-8")
    if markdown_path is not None:
        Path(markdown_path).write_text(to_markdown(report), encoding="utf-8")
    return report

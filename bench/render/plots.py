"""The report's plots, as PNG bytes: throughput bars, latency lines, speed against quality, memory, energy.

Drawn with matplotlib's object API (``matplotlib.figure.Figure``), which renders
through Agg without touching pyplot's global backend; matplotlib is imported
inside the functions only, so importing this module costs nothing until a plot
is drawn. Plots are deterministic: same cells, same pixels.

PSNR is inf for bit-identical output: in the speed/quality plot it is drawn at
a clipped position right of every finite value, on a tick labelled "exact".
"""

from __future__ import annotations

import io
import math
from typing import Any

import pandas as pd

from bench.analysis.numbers import fixed, num
from bench.analysis.report import Report, ordered, pareto_front


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
    devices = ordered(model_cells["device_label"])
    pipelines = ordered(model_cells["pipeline"])
    batches = sorted(ordered(model_cells["batch_size"]))
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
                    labels.append(fixed(cell["speedup"], 2, "x"))
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
    devices = ordered(model_cells["device_label"])
    pipelines = ordered(model_cells["pipeline"])
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
        batches = sorted(ordered(sub["batch_size"])) or [1]
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
    devices = ordered(model_cells["device_label"])
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
    devices = ordered(model_cells["device_label"])
    pipelines = [p for p in ordered(model_cells["pipeline"]) if p in set(ok["pipeline"])]
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
            num(y)
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


def add_figures(report: Report) -> None:
    """Draw each section's figures from its cells (only for HTML: Markdown has no images)."""
    for section in report.sections:
        group, item, model = section.cells, section.item, section.cells["model"].iloc[0]
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

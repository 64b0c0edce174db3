"""The report's plots, as PNG bytes: throughput bars, latency lines, speed against quality, memory, energy.

A forward model gets all of them. A generate model gets output tokens/s and TTFT
against batch size (``generation_figure``), a sample model a stacked bar of seconds
per image split into UNet steps, VAE decode and sampler (``sampling_figure``); both
get the memory and energy bars.

Drawn with matplotlib's object API (``matplotlib.figure.Figure``), which renders
through Agg without touching pyplot's global backend; matplotlib is imported
inside the functions only, so importing this module costs nothing until a plot
is drawn. Plots are deterministic: same cells, same pixels.

PSNR is inf for bit-identical output: in the speed/quality plot it is drawn at
a clipped position right of every finite value, on a tick labelled "exact".
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench.analysis.report import Report, ordered, pareto_front, sampling_split
from bench.core.numbers import fixed, num
from bench.render.figure import (
    DPI,
    FONT,
    MAX_WIDTH_IN,
    colors_for,
    darker,
    figure_png,
    grid,
    label_bars,
    laid_out,
    panel_width,
    plain_log_labels,
    text_size,
)
from bench.render.labels import Box, Placement, bar_label, place_labels


def throughput_figure(model_cells: pd.DataFrame, item: str) -> bytes:
    """Grouped bars per batch size: pipelines on x, one bar per device, labelled with speedup over fp32.

    A panel is as wide as its bars need (up to the page's width), so labels stay legible with many
    pipelines and devices; panels wrap onto more rows rather than shrink.
    """
    from matplotlib.figure import Figure

    ok = model_cells[model_cells["status"] == "ok"]
    devices = ordered(model_cells["device_label"])
    pipelines = ordered(model_cells["pipeline"])
    batches = sorted(ordered(model_cells["batch_size"]))
    colors = colors_for(devices)
    panel = panel_width(len(pipelines) * len(devices))
    rows, cols = grid(len(batches), max(1, min(3, int(MAX_WIDTH_IN // panel))))
    fig = Figure(figsize=(panel * cols, 3.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    width = 0.8 / max(len(devices), 1)
    values = ok["throughput_items_s"].to_numpy(dtype=float)
    log = len(values) > 0 and values.min() > 0 and values.max() / values.min() > 30
    failed = model_cells[model_cells["status"] != "ok"]
    drawn: list[tuple[Any, Any, list[str], Any]] = []
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
            drawn.append((ax, bars, labels, colors[device]))
        # a cell that did not run gets its status where its bar would be, so a gap is never silent
        for row in failed[failed["batch_size"] == batch].itertuples(index=False):
            x = (
                pipelines.index(row.pipeline)
                + (devices.index(row.device_label) - (len(devices) - 1) / 2) * width
            )
            ax.text(x, 0.02, str(row.status), transform=ax.get_xaxis_transform(), rotation=90, ha="center",
                    va="bottom", fontsize=FONT, color=colors[row.device_label])  # fmt: skip
        ax.set_xticks(range(len(pipelines)), pipelines, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(pipelines) - 0.4)  # every pipeline has its slot, bars or not
        ax.set_title(f"batch {batch}", fontsize=9)
        ax.set_ylabel(f"{item}/s" + (" (log)" if log else ""))
        if log:
            ax.set_yscale("log")
            plain_log_labels(ax.yaxis)
        ax.margins(y=0.25 if log else 0.15)
    for ax in axes[len(batches) :]:
        ax.set_visible(False)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", fontsize=FONT, ncols=min(len(devices), 4))
    fig.suptitle("throughput (bar labels: speedup over fp32 eager on the same device)", fontsize=10)
    renderer = laid_out(fig)
    for ax, bars, labels, color in drawn:
        label_bars(ax, bars, labels, color, renderer)
    return figure_png(fig)


def latency_figure(model_cells: pd.DataFrame) -> bytes:
    """p50 latency against batch size, one panel per device, whiskers up to p99 and a tick at p90."""
    from matplotlib.figure import Figure

    ok = model_cells[model_cells["status"] == "ok"]
    devices = ordered(model_cells["device_label"])
    pipelines = ordered(model_cells["pipeline"])
    rows, cols = grid(len(devices))
    fig = Figure(figsize=(4.6 * cols + 1.6, 3.4 * rows), layout="constrained")  # + the legend's column
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
        plain_log_labels(ax.yaxis)
        batches = sorted(ordered(sub["batch_size"])) or [1]
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.set_xlabel("batch size")
        ax.set_ylabel("latency ms (log)")
        ax.set_title(device, fontsize=9)
    for ax in axes[len(devices) :]:
        ax.set_visible(False)
    # one legend for every panel (a pipeline has one colour throughout), outside the axes: never on a line
    handles: dict[str, Any] = {}
    for ax in axes[: len(devices)]:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(name, handle)
    ordered_names = [p for p in pipelines if p in handles]
    fig.legend([handles[n] for n in ordered_names], ordered_names, loc="outside right upper", fontsize=FONT)
    fig.suptitle("latency: p50, whisker to p99, tick at p90", fontsize=10)
    return figure_png(fig)


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
    colors = colors_for(devices)
    fig = Figure(figsize=(10, 4.8), layout="constrained")
    ax = fig.subplots()
    points: list[tuple[float, float, str, Any]] = []
    fronts: list[list[tuple[float, float]]] = []
    for device in devices:
        sub = best[best["device_label"] == device]
        if sub.empty:
            continue
        xs = [top if v == math.inf else bottom if v == -math.inf else float(v) for v in sub["psnr_db"]]
        ys = sub["throughput_items_s"].to_numpy(dtype=float).tolist()
        ax.scatter(xs, ys, color=colors[device], label=device, zorder=3, s=MARKER**2)
        points += [
            (x, y, str(name), colors[device]) for x, y, name in zip(xs, ys, sub["pipeline"], strict=True)
        ]
        front = pareto_front(list(zip(xs, ys, strict=True)))
        fronts.append(front)
        ax.plot([p[0] for p in front], [p[1] for p in front], drawstyle="steps-post", color=colors[device],
                alpha=0.5)  # fmt: skip
    exact, broken = bool((psnr == math.inf).any()), bool((psnr == -math.inf).any())
    # the axis reaches the clipped positions only when a point sits there
    low = bottom - 5 if broken else (float(finite.min()) if len(finite) else bottom) - 3
    high = top + 8 if exact else (float(finite.max()) if len(finite) else top) + 3
    ax.set_xlim(low, high)
    ticks = [t for t in ax.get_xticks() if low < t < high and (not exact or t < top - 8)]
    ticks = [t for t in ticks if not broken or t > bottom + 8]  # keep clear of the clipped ticks
    labels = [f"{t:g}" for t in ticks]
    if exact:
        ticks.append(top)
        labels.append("exact")
    if broken:
        ticks.insert(0, bottom)
        labels.insert(0, "non-finite")
    ax.set_xticks(ticks, labels)
    ax.set_xlim(low, high)
    ax.set_yscale("log")
    plain_log_labels(ax.yaxis)
    ax.margins(y=0.25)
    ax.set_xlabel("PSNR dB against fp32 eager (higher is closer)")
    ax.set_ylabel(f"best {item}/s over batch sizes (log)")
    ax.set_title("speed / quality: up and right is better; lines are each device's Pareto front", fontsize=10)
    fig.legend(loc="outside right upper", fontsize=FONT)
    _label_points(
        fig, ax, points, fronts, [p for p in ordered(model_cells["pipeline"]) if p in set(best["pipeline"])]
    )
    return figure_png(fig)


MARKER = 6  # scatter marker diameter in points


def _front_boxes(ax: Any, fronts: list[list[tuple[float, float]]]) -> list[Box]:
    """The Pareto fronts' steps (horizontal, then vertical) as thin boxes in pixels, for labels to avoid."""
    boxes = []
    for front in fronts:
        for (x0, y0), (x1, y1) in zip(front, front[1:], strict=False):
            for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1))):
                (ax_, ay), (bx, by) = ax.transData.transform([a, b])
                boxes.append(Box(min(ax_, bx) - 1, min(ay, by) - 1, max(ax_, bx) + 1, max(ay, by) + 1))
    return boxes


def _placed(
    ax: Any,
    points: list[tuple[float, float, str, Any]],
    texts: list[str],
    fronts: Any,
    renderer: Any,
    rings: int,
) -> tuple[list[int], list[tuple[float, float]], list[Placement]]:
    """Placement of ``texts`` (one per point) top to bottom, right to left: the front gets the nearest spots."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][1], -points[i][0]))
    anchors = [tuple(ax.transData.transform((points[i][0], points[i][1]))) for i in order]
    sizes = [text_size(renderer, texts[i]) for i in order]
    box = ax.get_window_extent(renderer)
    radius = MARKER / 2 * DPI / 72
    placements = place_labels(
        anchors, sizes, Box(box.x0, box.y0, box.x1, box.y1), obstacles=_front_boxes(ax, fronts),
        marker=radius + 1, rings=rings,
    )  # fmt: skip
    return order, sizes, placements


def _label_points(
    fig: Any, ax: Any, points: list[tuple[float, float, str, Any]], fronts: Any, pipelines: list[str]
) -> None:
    """Name each point next to it when every name finds a clear spot (labels.place_labels); otherwise
    (a crowded cluster) number the points by pipeline, the same number on every device, with a key
    beside the plot: a name far from its point is worse than a number next to it."""
    renderer = laid_out(fig)
    names = [p[2] for p in points]
    order, sizes, placements = _placed(ax, points, names, fronts, renderer, rings=2)
    texts = names
    if not all(p.clear for p in placements):
        from matplotlib.lines import Line2D

        number = {pipeline: str(n) for n, pipeline in enumerate(pipelines, start=1)}
        key = [Line2D([], [], linestyle="none", label=f"{number[p]}  {p}") for p in pipelines]
        fig.legend(handles=key, loc="outside right lower", fontsize=FONT, handlelength=0, handletextpad=0,
                   title="pipelines", title_fontsize=FONT)  # fmt: skip
        renderer = laid_out(fig)  # the key narrows the axes: place again in the new geometry
        texts = [number[name] for name in names]
        order, sizes, placements = _placed(ax, points, texts, fronts, renderer, rings=5)
    radius = MARKER / 2 * DPI / 72
    for i, place, (w, h) in zip(order, placements, sizes, strict=True):
        x, y, _, color = points[i]
        gap = math.hypot(max(place.dx, 0.0, -(place.dx + w)), max(place.dy, 0.0, -(place.dy + h)))
        arrow = {"arrowstyle": "-", "color": color, "lw": 0.6, "shrinkA": 0, "shrinkB": radius}
        text = ax.annotate(
            texts[i], (x, y), xytext=(place.dx, place.dy), textcoords="offset pixels", ha="left", va="bottom",
            fontsize=FONT, color=darker(color), arrowprops=arrow if gap > radius + 6 else None,
            annotation_clip=False,
        )  # fmt: skip
        text.set_in_layout(False)


def bars_figure(model_cells: pd.DataFrame, column: str, ylabel: str, title: str) -> bytes | None:
    """One bar per pipeline and device, at the largest batch size that pipeline ran at on that device."""
    from matplotlib.figure import Figure

    ok = model_cells[(model_cells["status"] == "ok") & model_cells[column].notna()]
    if ok.empty:
        return None
    ok = ok.sort_values("batch_size").drop_duplicates(["device_label", "pipeline"], keep="last")
    devices = ordered(model_cells["device_label"])
    pipelines = [p for p in ordered(model_cells["pipeline"]) if p in set(ok["pipeline"])]
    colors = colors_for(devices)
    fig = Figure(figsize=(max(9.0, panel_width(len(pipelines) * len(devices))), 3.6), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(devices), 1)
    drawn: list[tuple[Any, list[str], Any]] = []
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
        drawn.append((bars, labels, colors[device]))
    ax.set_xticks(range(len(pipelines)), pipelines, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.margins(y=0.15)
    fig.legend(loc="outside lower center", fontsize=FONT, ncols=min(len(devices), 4))
    renderer = laid_out(fig)
    for bars, labels, color in drawn:
        label_bars(ax, bars, labels, color, renderer)
    return figure_png(fig)


#: line styles that tell devices apart in the generation figure (a pipeline keeps its colour throughout)
DEVICE_STYLES = ("-", "--", ":", "-.")


def generation_figure(model_cells: pd.DataFrame) -> bytes | None:
    """Output tokens/s and TTFT against batch size, one line per pipeline (and device): two panels."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    ok = model_cells[(model_cells["status"] == "ok") & model_cells["output_tokens_s"].notna()]
    if ok.empty:
        return None
    devices = ordered(model_cells["device_label"])
    pipelines = ordered(model_cells["pipeline"])
    cmap = colormaps["tab10"]
    fig = Figure(figsize=(10.6, 3.8), layout="constrained")
    axes = fig.subplots(1, 2, squeeze=False).ravel()
    panels = (("output_tokens_s", "output tokens/s"), ("ttft_ms", "TTFT ms (prefill + first token)"))
    batches = sorted(int(b) for b in ordered(ok["batch_size"]))
    for ax, (column, ylabel) in zip(axes, panels, strict=True):
        for d, device in enumerate(devices):
            for p, pipeline in enumerate(pipelines):
                line = ok[(ok["device_label"] == device) & (ok["pipeline"] == pipeline)].sort_values(
                    "batch_size"
                )
                line = line[line[column].notna()]
                if line.empty:
                    continue
                label = pipeline if len(devices) == 1 else f"{pipeline} ({device})"
                ax.plot(line["batch_size"].to_numpy(dtype=float), line[column].to_numpy(dtype=float),
                        color=cmap(p % 10), linestyle=DEVICE_STYLES[d % len(DEVICE_STYLES)], marker="o", ms=4,
                        label=label)  # fmt: skip
        values = ok[column].to_numpy(dtype=float)
        values = values[~pd.isna(values)]
        log = len(values) > 0 and values.min() > 0 and values.max() / values.min() > 30
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel + (" (log)" if log else ""))
        if log:
            ax.set_yscale("log")
            plain_log_labels(ax.yaxis)
            ax.margins(y=0.15)
        else:
            ax.set_ylim(0, float(values.max()) * 1.15)  # from zero: a ratio between lines reads as heights
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(name, handle)
    fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=FONT)
    fig.suptitle("generation: output tokens/s (what the batch yields) and time to first token", fontsize=10)
    return figure_png(fig)


#: the parts of a sampling run's seconds per image, in stacking order (bench.measure.diffusion)
SAMPLING_PARTS = ("UNet steps", "VAE decode", "sampler overhead")


def sampling_figure(model_cells: pd.DataFrame) -> bytes | None:
    """Seconds per image, per pipeline and batch, as bars stacked from UNet steps, VAE decode and sampler.

    One panel per device. The parts are ``bench.analysis.report.sampling_split``'s: each
    bar is as tall as the cell's s/image, labelled with it. A cell that did not run gets
    its status where its bar would be.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    if not ((model_cells["status"] == "ok") & model_cells["s_per_image"].notna()).any():
        return None
    devices = ordered(model_cells["device_label"])
    pipelines = ordered(model_cells["pipeline"])
    batches = sorted(int(b) for b in ordered(model_cells["batch_size"]))
    colors = [colormaps["tab10"](i) for i in (0, 1, 2)]
    slots = len(pipelines) * len(batches)
    panel = panel_width(slots + len(batches))
    rows, cols = grid(len(devices), max(1, min(3, int(MAX_WIDTH_IN // panel))))
    fig = Figure(figsize=(max(panel * cols, 7.0), 3.8 * rows), layout="constrained")  # room for the title
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    tops: list[tuple[Any, Any, str]] = []
    for ax, device in zip(axes, devices, strict=False):
        sub = model_cells[model_cells["device_label"] == device]
        ticks: list[float] = []
        names: list[str] = []
        x = 0.0
        for batch in batches:
            for pipeline in pipelines:
                cell = sub[(sub["batch_size"] == batch) & (sub["pipeline"] == pipeline)]
                if cell.empty:
                    continue
                row = next(cell.itertuples(index=False))
                split = sampling_split(row) if row.status == "ok" else None
                if split is not None:
                    bottom = 0.0
                    bar = None
                    for part, value, color in zip(SAMPLING_PARTS, split, colors, strict=True):
                        (bar,) = ax.bar([x], [value], bottom=bottom, width=0.8, color=color, label=part)
                        bottom += value
                    tops.append((ax, bar, num(row.s_per_image)))
                else:
                    ax.text(x, 0.02, str(row.status), transform=ax.get_xaxis_transform(), rotation=90,
                            ha="center", va="bottom", fontsize=FONT, color="#b3261e")  # fmt: skip
                ticks.append(x)
                names.append(pipeline if len(batches) == 1 else f"{pipeline} (b{batch})")
                x += 1.0
            x += 0.6  # a gap between batch sizes
        ax.set_xticks(ticks, names, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, max(x - 1.0, 0.6))
        ax.set_ylabel("s per image")
        ax.set_title(device, fontsize=9)
        ax.margins(y=0.15)
    for ax in axes[len(devices) :]:
        ax.set_visible(False)
    handles: dict[str, Any] = {}
    for ax in axes[: len(devices)]:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(name, handle)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", fontsize=FONT, ncols=3)
    fig.suptitle("seconds per image: UNet steps, VAE decode and sampler overhead (bar labels: s/image)",
                 fontsize=10)  # fmt: skip
    renderer = laid_out(fig)
    for ax, bar, label in tops:
        _label_stack(ax, bar, label, renderer)
    return figure_png(fig)


def _label_stack(ax: Any, top: Any, label: str, renderer: Any) -> None:
    """A stacked bar's total above it: across when it fits the bar's width, upright when not."""
    box = top.get_window_extent(renderer)
    w, h = text_size(renderer, label)
    place = bar_label(w, h, box.width, 0.0)  # never inside: the top segment is only one part
    text = ax.annotate(
        label, (top.get_x() + top.get_width() / 2, top.get_y() + top.get_height()), xytext=(0, 2),
        textcoords="offset pixels", ha="center", va="bottom", rotation=90 if place.upright else 0,
        fontsize=FONT, color="#222222", annotation_clip=False,
    )  # fmt: skip
    text.set_in_layout(False)


def soak_tables(runs: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every run's timeseries.csv and soak.csv, tagged with the cells' run_id (cell ids repeat across runs)."""
    out: dict[str, pd.DataFrame] = {}
    for name in ("timeseries.csv", "soak.csv"):
        frames = [
            run.table(name).merge(run.cells[["cell_id", "run_id"]], on="cell_id", how="left")
            for run in runs
            if (run.path / name).is_file()
        ]
        out[name] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out["timeseries.csv"], out["soak.csv"]


def add_figures(report: Report) -> None:
    """Draw each section's figures from its cells (only for HTML: Markdown has no images); a soak's
    time series get figures of their own."""
    from bench.render.timeseries_plots import soak_figures

    timeseries, soak = soak_tables(report.runs)
    for section in report.sections:
        group, item, model = section.cells, section.item, section.cells["model"].iloc[0]
        figures: list[tuple[str, bytes | None]] = []
        if section.workload == "generate":
            figures.append((f"{model} output tokens/s and TTFT against batch size", generation_figure(group)))
        elif section.workload == "sample":
            figures.append((f"{model} seconds per image: UNet, VAE and sampler", sampling_figure(group)))
        else:
            if (group["status"] == "ok").any():
                figures.append(
                    (f"{model} throughput per pipeline and device", throughput_figure(group, item))
                )
                figures.append((f"{model} latency against batch size", latency_figure(group)))
            figures.append((f"{model} speed against quality", pareto_figure(group, item)))
        figures.append(
            (
                f"{model} peak memory",
                bars_figure(
                    group, "peak_mb", "peak MB", "peak memory (device memory on GPUs, host RSS on CPU)"
                ),
            )
        )
        if section.workload == "generate":
            figures.append(
                (
                    f"{model} energy per decoded token",
                    bars_figure(
                        group, "energy_j_per_token_decode", "J per token", "energy per decoded token"
                    ),
                )
            )
        else:
            figures.append(
                (
                    f"{model} energy per item",
                    bars_figure(group, "energy_j_per_item", "J per item", "energy per item"),
                )
            )
        section.figures += [(caption, png) for caption, png in figures if png is not None]
        if not timeseries.empty:
            section.figures += soak_figures(section.cells, timeseries, soak)

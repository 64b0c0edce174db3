"""The report's soak plots: one figure per soak cell, its time series stacked on one time axis.

Panels, top to bottom: achieved QPS, latency p50 and p99, host RSS, device memory (torch's
allocated, NVML's used), and, where the device reported them, SM clock, GPU power and
temperature, then the machine's CPU use and steal. Each panel that a soak check judges
is titled with that check's verdict and estimate (bench.analysis.soak; red when detected), and
a detected trend is drawn as the dashed block-means line the verdict rests on, so the reader sees
the evidence rather than a word. The warm-up the checks leave out is shaded.

matplotlib is imported inside the functions only (like bench.render.plots), and a
column with no finite value draws nothing: a CPU soak has no GPU panels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.soak import WARMUP_S, trend
from bench.core.numbers import num
from bench.render.figure import FONT, MAX_WIDTH_IN, figure_png

#: (panel title, [(column, label)], y label, the soak check judging it or "", the columns its trend is drawn on)
PANELS: tuple[tuple[str, tuple[tuple[str, str], ...], str, str, tuple[str, ...]], ...] = (
    ("throughput", (("achieved_qps", "achieved QPS"),), "req/s", "throughput_drift", ("achieved_qps",)),
    (
        "latency",
        (("latency_ms_p50", "p50"), ("latency_ms_p99", "p99")),
        "ms",
        "latency_drift",
        ("latency_ms_p99",),
    ),
    ("host memory", (("host_rss_mb", "host RSS"),), "MB", "rss_growth", ("host_rss_mb",)),
    (
        "device memory",
        (("torch_device_mem_mb", "allocated (torch)"), ("nvml_device_mem_mb", "used (NVML)")),
        "MB",
        "device_mem_growth",
        ("torch_device_mem_mb", "nvml_device_mem_mb"),
    ),
    ("SM clock", (("sm_clock_mhz", "SM clock"),), "MHz", "throttling", ()),
    ("GPU power", (("gpu_power_w", "power"),), "W", "", ()),
    ("GPU temperature", (("gpu_temp_c", "temperature"),), "C", "", ()),
    ("CPU", (("cpu_util_pct", "busy, all cores"), ("steal_pct", "steal")), "% of all cores", "", ()),
)


def _finite(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), math.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float, na_value=math.nan)


def _verdicts(soak: pd.DataFrame | list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    if soak is None:
        return {}
    frame = pd.DataFrame(soak) if not isinstance(soak, pd.DataFrame) else soak
    if frame.empty or "check" not in frame.columns:
        return {}
    return {str(r["check"]): r for r in frame.to_dict("records")}


def verdict_title(check: str, verdict: dict[str, Any] | None) -> str:
    """'throughput_drift: detected, -47.9 qps/h' (or ': none', ': not measured'); "" without a verdict."""
    if verdict is None:
        return ""
    word = str(verdict.get("verdict", "")).replace("_", " ")
    estimate = verdict.get("estimate")
    unit = verdict.get("unit") or ""
    if word == "detected" and estimate is not None and not pd.isna(estimate):
        return f"{check}: detected, {num(estimate)} {unit}".rstrip()
    return f"{check}: {word}"


def soak_cell_figure(
    series: pd.DataFrame,
    soak: pd.DataFrame | list[dict[str, Any]] | None = None,
    title: str = "soak",
    warmup_s: float = WARMUP_S,
) -> bytes | None:
    """One cell's time series (TIMESERIES_COLUMNS rows) as stacked panels; None when it has no rows."""
    if series.empty or "t_s" not in series.columns:
        return None
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    series = series.sort_values("t_s")
    t = _finite(series, "t_s")
    verdicts = _verdicts(soak)
    panels = [p for p in PANELS if any(np.isfinite(_finite(series, c)).any() for c, _ in p[1])]
    if not panels:
        return None
    fig = Figure(figsize=(MAX_WIDTH_IN * 0.75, 1.45 * len(panels) + 0.6), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False).ravel()
    cmap = colormaps["tab10"]
    for ax, (name, columns, unit, check, trend_columns) in zip(axes, panels, strict=True):
        detected = bool(check) and verdicts.get(check, {}).get("verdict") == "detected"
        for i, (column, label) in enumerate(columns):
            y = _finite(series, column)
            if not np.isfinite(y).any():
                continue
            ax.plot(t, y, color=cmap(i), linewidth=0.8, label=label)
            if detected and column in trend_columns:
                _draw_trend(ax, t, y, warmup_s, cmap(i))
        heading = " | ".join([name] + ([verdict_title(check, verdicts[check])] if check in verdicts else []))
        ax.set_title(heading, fontsize=8, loc="left", color="#b00000" if detected else "black")
        ax.set_ylabel(unit, fontsize=FONT)
        ax.tick_params(labelsize=FONT)
        if warmup_s > 0 and len(t) and np.nanmin(t) < warmup_s:
            ax.axvspan(np.nanmin(t), warmup_s, color="#dddddd", alpha=0.6, linewidth=0)
        if len(columns) > 1:
            ax.legend(fontsize=FONT, loc="upper right", ncols=len(columns), framealpha=0.8)
        ax.grid(True, linewidth=0.3, alpha=0.6)
    axes[-1].set_xlabel("seconds since the soak's start (grey: warm-up, not judged)", fontsize=FONT)
    fig.suptitle(title, fontsize=10)
    return figure_png(fig)


def _draw_trend(ax: Any, t: np.ndarray, y: np.ndarray, warmup_s: float, color: Any) -> None:
    """The block-means fit the verdict rests on, dashed over the judged span."""
    after = t >= warmup_s
    fit = trend(t[after], y[after])
    if fit is None:
        return
    judged = t[after & np.isfinite(y)]
    xs = np.array([judged.min(), judged.max()], dtype=float)
    ax.plot(xs, fit.first + fit.slope * (xs - fit.start_s), linestyle="--", linewidth=1.4, color=color)


def _cell_title(cell: dict[str, Any] | None, cell_id: Any) -> str:
    if cell is None:
        return f"cell {cell_id}: soak time series"
    device = cell.get("device_label") or cell.get("device_name") or cell.get("device") or "?"
    parts = [str(cell.get("model", "?")), str(cell.get("pipeline", "?")), f"on {device}"]
    batch = cell.get("batch_size")
    if batch is not None and not pd.isna(batch):
        parts.append(f"batch {int(batch)}")
    return f"{' '.join(parts)} (cell {cell_id}): soak time series"


def soak_figures(
    cells: pd.DataFrame,
    timeseries: pd.DataFrame,
    soak: pd.DataFrame | None = None,
    warmup_s: float = WARMUP_S,
) -> list[tuple[str, bytes]]:
    """(caption, PNG) per cell of ``cells`` that has time-series rows, in ``cells``' order; the caption
    names the cell and quotes the evidence of each check ``soak`` has detected for it.

    Rows are matched on ``cell_id``, and on ``run_id`` too where both tables have it (a
    report of several runs repeats cell ids).
    """
    if timeseries is None or timeseries.empty or "cell_id" not in timeseries.columns:
        return []
    keys = (
        ["run_id", "cell_id"] if "run_id" in timeseries.columns and "run_id" in cells.columns else ["cell_id"]
    )
    by_key = {k if isinstance(k, tuple) else (k,): g for k, g in timeseries.groupby(keys, sort=False)}
    checks: dict[tuple[Any, ...], pd.DataFrame] = {}
    if soak is not None and not soak.empty and all(k in soak.columns for k in keys):
        checks = {k if isinstance(k, tuple) else (k,): g for k, g in soak.groupby(keys, sort=False)}
    figures: list[tuple[str, bytes]] = []
    for cell in cells.to_dict("records"):
        key = tuple(cell.get(k) for k in keys)
        series = by_key.get(key)
        if series is None:
            continue
        title = _cell_title(cell, cell.get("cell_id"))
        png = soak_cell_figure(series, checks.get(key), title, warmup_s)
        if png is not None:
            found = [v for v in _verdicts(checks.get(key)).values() if v.get("verdict") == "detected"]
            caption = "; ".join([title] + [f"{v['check']} detected: {v['evidence']}" for v in found])
            figures.append((caption, png))
    return figures

"""Did the soak change as it ran? Throughput and latency drift, host and device memory growth, throttling.

A soak records one row a second (``timeseries.csv``, bench.measure.monitor); each check
here reads those rows after a warm-up (``WARMUP_S``: compilation, allocator growth and
clocks settling are not what a soak is for) and gives one ``soak.csv`` row: its verdict
(``none`` | ``detected`` | ``not_measured``), the estimate it rests on with a 95%
interval, the unit, and one line of evidence with the numbers.

Trends (drift and growth): block means, then least squares
-------------------------------------------------------------
One-second readings are not independent: windowed latency percentiles overlap by
construction (the p99 of the last 10 s shares 9 s with the previous row's), and load,
clocks and allocator state wander on time scales of tens of seconds. A least-squares
slope over 1-s samples with the textbook standard error would then be far too sure of
itself (a flat but wandering series gets a "significant" trend). So the series is cut
into non-overlapping blocks of ``max(BLOCK_S, span / MAX_BLOCKS)`` seconds (20 s: twice
the monitor's 10-s latency window, so neighbouring block means share little), each
block is reduced to its mean, and the slope is fitted on the block means (the
"batch means" method of simulation output analysis). Its 95% interval is Student's t
with blocks - 2 degrees of freedom, widened by ``sqrt((1 + r1) / (1 - r1))`` where the
block means' residuals still show a positive lag-1 autocorrelation r1 (capped at 0.8),
which covers wander slower than a block. Fewer than ``MIN_BLOCKS`` blocks (2 minutes
of readings after the warm-up) is ``not_measured``: such an interval means little.
Newey-West on the 1-s samples was the alternative; it needs a bandwidth choice that
matters as much as the block length does, and block means are easier to explain
and to draw.

What the interval is worth, measured on synthetic flat soaks (200 seeds each: Poisson
completions at 50/s plus AR(1) wander, a windowed p99 of 40 ms wandering as AR(1) with
phi 0.95 and sd 3 ms, RSS as AR(1) with phi 0.98 and sd 3 MB): the interval alone
excluded zero in 11-14% of 10-minute soaks where 5% was meant (wander that persists
20-50 s does not average out in 10 minutes, and no estimate from those same 10 minutes
can fully tell it from a trend: summing the 1-s residuals' autocorrelations, as
Newey-West does, gave 18%, an AR(1)-corrected interval 10-12%), and in 4-8% of
1-hour soaks. With the materiality thresholds below, the checks called detected in 2%
(throughput), 10% (latency) and 1% (RSS) of the 10-minute soaks, 7%, 14% and 4% of
5-minute ones, and none of the 1-hour ones. Soak for longer than the slowest wander
you expect; a short soak's "detected" is a prompt to look at the plot, not a proof.

"detected" needs both an interval that excludes zero and a change that matters over
the soak, the slope times the soak's span:

- ``throughput_drift`` (achieved_qps): change beyond ``THROUGHPUT_DRIFT_PCT`` = 5% of
  the mean, either way;
- ``latency_drift`` (latency_ms_p99; p50's trend is quoted in the evidence): beyond
  ``LATENCY_DRIFT_PCT`` = 10% of the mean, either way (a windowed p99 is the noisiest
  column, and SLOs are rarely set closer than that);
- ``rss_growth`` (host_rss_mb) and ``device_mem_growth`` (torch's allocated memory,
  else NVML's used memory of the device): growth only, at least ``LEAK_MIN_MB_PER_H``
  = 10 MB/h (240 MB a day, what a deployment would notice) and at least
  ``max(LEAK_MIN_GROWTH_MB, LEAK_MIN_GROWTH_PCT x level)`` = max(8 MB, 1%) over the soak
  (the allocator's ordinary churn is a few MB). A leak keeps rising: memory that
  stepped up once and stayed flat over the soak's second half (a cache filled, an
  arena grown) is ``none``, with the step in the evidence, not a leak.

Throttling
----------
The SM clock's median over the first ``EARLY_S`` = 60 s after the warm-up is the
reference; a reading more than ``THROTTLE_DROP_PCT`` = 10% below it is a drop. A drop
is throttling when, at that reading, the temperature is within ``TEMP_MARGIN_C`` = 2 C
of the slowdown limit or power is at ``POWER_MARGIN`` = 97% of the enforced limit or
above (the limits come from NVML through the caller: bench.measure.monitor.throttle_limits),
for at least ``MIN_THROTTLED_S`` = 5 readings. A clock that drops with temperature and
power both clear of their limits is ``none`` (a light load lets the GPU idle down; that
is not throttling), said in the evidence. The estimate is the drop in MHz (reference
minus the median throttled clock); it has no interval. Without clock readings (a CPU,
or no NVML) it is ``not_measured``, and so is a drop when neither limit is known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

#: seconds at the start of a soak left out of every check
WARMUP_S = 30.0
#: the shortest block whose mean is one point of a trend fit, in seconds
BLOCK_S = 20.0
MAX_BLOCKS = 30
#: fewer blocks than this after the warm-up: no trend is judged (6 x 20 s = 2 minutes)
MIN_BLOCKS = 6
#: the lag-1 autocorrelation of block-mean residuals is capped here when it widens the interval
MAX_R1 = 0.8
THROUGHPUT_DRIFT_PCT = 5.0
LATENCY_DRIFT_PCT = 10.0
LEAK_MIN_MB_PER_H = 10.0
LEAK_MIN_GROWTH_MB = 8.0
LEAK_MIN_GROWTH_PCT = 1.0
#: a leak's second half must still rise at least this share of the whole soak's slope
LEAK_STILL_RISING = 0.25
EARLY_S = 60.0
THROTTLE_DROP_PCT = 10.0
TEMP_MARGIN_C = 2.0
POWER_MARGIN = 0.97
MIN_THROTTLED_S = 5

CHECKS: tuple[str, ...] = (
    "throughput_drift",
    "latency_drift",
    "rss_growth",
    "device_mem_growth",
    "throttling",
)

#: Student's t, two-sided 95% (0.975 quantile), by degrees of freedom; beyond 30, the value at 30 is
#: within 2% of the normal's 1.96 and errs wide
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    """Student's t 0.975 quantile for ``df`` >= 1 degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T975[min(df, len(_T975)) - 1]


@dataclass(frozen=True)
class Trend:
    """A least-squares slope over block means, per second, with its 95% interval."""

    slope: float
    ci_low: float
    ci_high: float
    blocks: int
    block_s: float
    mean: float  # of the block means: the level a relative change is stated against
    span_s: float  # first to last block centre: what "over the soak" multiplies the slope by
    first: float  # the fitted line at the first and last block centres
    last: float
    start_s: float = math.nan  # the first block centre (the fitted line is first + slope * (t - start_s))

    @property
    def change(self) -> float:
        """The fitted change over the soak (slope x span)."""
        return self.slope * self.span_s

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


def block_means(t: np.ndarray, y: np.ndarray, block_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Means of time and value per ``block_s``-second block from the first reading; NaNs left out.

    A block with under half the readings of the fullest block (the soak's ragged end, a
    gap) is dropped: its mean is noisier than the others and the fit weighs blocks equally.
    """
    keep = np.isfinite(t) & np.isfinite(y)
    t, y = t[keep], y[keep]
    if len(t) == 0:
        return np.array([]), np.array([])
    index = np.floor((t - t[0]) / block_s).astype(int)
    counts = np.bincount(index)
    full = counts >= max(1, counts.max()) / 2
    tb = np.bincount(index, weights=t)[full] / counts[full]
    yb = np.bincount(index, weights=y)[full] / counts[full]
    return tb, yb


def trend(t: np.ndarray, y: np.ndarray) -> Trend | None:
    """The block-means slope of ``y`` against ``t`` (seconds), or None with fewer than MIN_BLOCKS blocks."""
    keep = np.isfinite(t) & np.isfinite(y)
    if keep.sum() < 2:
        return None
    span = float(t[keep].max() - t[keep].min())
    block_s = max(BLOCK_S, span / MAX_BLOCKS)
    tb, yb = block_means(t, y, block_s)
    n = len(tb)
    if n < MIN_BLOCKS:
        return None
    tc = tb - tb.mean()
    sxx = float(np.sum(tc**2))
    slope = float(np.sum(tc * (yb - yb.mean())) / sxx)
    intercept = float(yb.mean())
    residuals = yb - (intercept + slope * tc)
    s2 = float(np.sum(residuals**2)) / (n - 2)
    se = math.sqrt(s2 / sxx)
    r1 = lag1_autocorrelation(residuals)
    widen = math.sqrt((1 + r1) / (1 - r1)) if r1 > 0 else 1.0
    half = t975(n - 2) * se * widen
    return Trend(
        slope=slope,
        ci_low=slope - half,
        ci_high=slope + half,
        blocks=n,
        block_s=block_s,
        mean=float(yb.mean()),
        span_s=float(tb[-1] - tb[0]),
        first=intercept + slope * float(tc[0]),
        last=intercept + slope * float(tc[-1]),
        start_s=float(tb[0]),
    )


def lag1_autocorrelation(residuals: np.ndarray) -> float:
    """Lag-1 autocorrelation of ``residuals``, capped to [-MAX_R1, MAX_R1] (0 for a constant series)."""
    r = residuals - residuals.mean()
    denominator = float(np.sum(r**2))
    if len(r) < 3 or denominator == 0:
        return 0.0
    return float(np.clip(np.sum(r[1:] * r[:-1]) / denominator, -MAX_R1, MAX_R1))


# ------------------------------------------------------------------ the checks
def soak_verdicts(
    rows: list[dict[str, Any]] | pd.DataFrame,
    warmup_s: float = WARMUP_S,
    temp_limit_c: float = math.nan,
    power_limit_w: float = math.nan,
    end_s: float = math.inf,
) -> list[dict[str, Any]]:
    """One row per check (``CHECKS``, in that order) with SOAK_COLUMNS' fields except cell_id.

    ``rows`` are the time series (TIMESERIES_COLUMNS; missing columns read as NaN), judged
    from ``warmup_s`` to ``end_s`` (when the load's last request may arrive: the seconds
    after it, while the server drains, have a falling rate that is no drift);
    ``temp_limit_c`` and ``power_limit_w`` are the GPU's slowdown temperature and
    enforced power limit (NaN where unknown: on CPU, or without NVML).
    """
    if warmup_s < 0 or not end_s > warmup_s:
        raise ValueError(f"need 0 <= warmup_s < end_s, got {warmup_s} and {end_s}")
    frame = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows
    frame = frame.sort_values("t_s") if "t_s" in frame.columns else frame
    t_all = _column(frame, "t_s")
    after = (t_all >= warmup_s) & (t_all <= end_s)  # t_s counts from the soak's start; NaN times fall out
    series = {name: _column(frame, name)[after] for name in _SERIES}
    t = t_all[after]
    context = f"after the {warmup_s:g} s warm-up"
    return [
        throughput_drift(t, series["achieved_qps"], context),
        latency_drift(t, series["latency_ms_p99"], series["latency_ms_p50"], context),
        memory_growth("rss_growth", "host RSS", t, series["host_rss_mb"], context),
        device_memory_growth(t, series["torch_device_mem_mb"], series["nvml_device_mem_mb"], context),
        throttling(
            t,
            series["sm_clock_mhz"],
            series["gpu_temp_c"],
            series["gpu_power_w"],
            temp_limit_c,
            power_limit_w,
        ),
    ]


_SERIES = (
    "achieved_qps", "latency_ms_p50", "latency_ms_p99", "host_rss_mb", "torch_device_mem_mb",
    "nvml_device_mem_mb", "sm_clock_mhz", "gpu_temp_c", "gpu_power_w",
)  # fmt: skip


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), math.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float, na_value=math.nan)


def verdict_row(
    check: str, verdict: str, estimate: float, ci: tuple[float, float], unit: str, evidence: str
) -> dict[str, Any]:
    return {
        "check": check,
        "verdict": verdict,
        "estimate": estimate,
        "ci_low": ci[0],
        "ci_high": ci[1],
        "unit": unit,
        "evidence": evidence,
    }


def _not_measured(check: str, unit: str, why: str) -> dict[str, Any]:
    return verdict_row(check, "not_measured", math.nan, (math.nan, math.nan), unit, why)


def _too_short(t: np.ndarray, y: np.ndarray, what: str, context: str) -> str:
    finite = np.isfinite(t) & np.isfinite(y)
    if not finite.any():
        return f"no {what} readings {context}"
    span = float(t[finite].max() - t[finite].min()) if finite.sum() > 1 else 0.0
    return (
        f"only {span:.0f} s of {what} readings {context}; a trend needs {MIN_BLOCKS} blocks of "
        f"{BLOCK_S:g} s ({MIN_BLOCKS * BLOCK_S:.0f} s)"
    )


def _per_hour(fit: Trend) -> tuple[float, tuple[float, float]]:
    return fit.slope * 3600, (fit.ci_low * 3600, fit.ci_high * 3600)


def _fit_text(fit: Trend, unit: str, digits: int = 3) -> str:
    slope, (low, high) = _per_hour(fit)
    return (
        f"{_g(slope, digits)} {unit}/h (95% CI {_g(low, digits)} to {_g(high, digits)}, "
        f"{fit.blocks} blocks of {fit.block_s:.0f} s)"
    )


def _g(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"


def _drift(
    check: str, label: str, unit: str, t: np.ndarray, y: np.ndarray, pct: float, context: str
) -> dict[str, Any]:
    fit = trend(t, y)
    if fit is None:
        return _not_measured(check, f"{unit}/h", _too_short(t, y, label, context))
    slope, ci = _per_hour(fit)
    change_pct = 100 * fit.change / fit.mean if fit.mean else (0.0 if fit.change == 0 else math.inf)
    material = abs(change_pct) > pct
    detected = fit.excludes_zero and material
    direction = "rose" if fit.change > 0 else "fell"
    text = (
        f"{label} {direction} {_g(fit.first)} -> {_g(fit.last)} {unit} over {fit.span_s:.0f} s "
        f"({change_pct:+.1f}% of the mean {_g(fit.mean)}): {_fit_text(fit, unit)}"
    )
    if detected:
        evidence = text
    elif not fit.excludes_zero:
        evidence = f"{text}; the interval includes 0"
    else:
        evidence = f"{text}; within the {pct:g}% that counts as drift"
    return verdict_row(check, "detected" if detected else "none", slope, ci, f"{unit}/h", evidence)


def throughput_drift(t: np.ndarray, qps: np.ndarray, context: str = "") -> dict[str, Any]:
    return _drift("throughput_drift", "achieved QPS", "qps", t, qps, THROUGHPUT_DRIFT_PCT, context)


def latency_drift(t: np.ndarray, p99_ms: np.ndarray, p50_ms: np.ndarray, context: str = "") -> dict[str, Any]:
    """Judged on p99 (what an SLO names); the p50 trend is quoted beside it, for the reader."""
    row = _drift("latency_drift", "p99 latency", "ms", t, p99_ms, LATENCY_DRIFT_PCT, context)
    median = trend(t, p50_ms)
    if median is not None and row["verdict"] != "not_measured":
        row["evidence"] += f"; p50 {_g(median.first)} -> {_g(median.last)} ms: {_fit_text(median, 'ms')}"
    return row


def memory_growth(check: str, label: str, t: np.ndarray, mb: np.ndarray, context: str = "") -> dict[str, Any]:
    """A leak: memory rising linearly, materially, and still rising in the soak's second half."""
    fit = trend(t, mb)
    unit = "MB/h"
    if fit is None:
        return _not_measured(check, unit, _too_short(t, mb, label, context))
    slope, ci = _per_hour(fit)
    floor_mb = max(LEAK_MIN_GROWTH_MB, LEAK_MIN_GROWTH_PCT / 100 * fit.mean)
    text = (
        f"{label} {_g(fit.first, 4)} -> {_g(fit.last, 4)} MB over {fit.span_s:.0f} s "
        f"({fit.change:+.1f} MB): {_fit_text(fit, 'MB')}"
    )
    if not fit.ci_low > 0:
        return verdict_row(
            check, "none", slope, ci, unit, f"{text}; no growth: the interval reaches 0 or below"
        )
    if slope < LEAK_MIN_MB_PER_H or fit.change < floor_mb:
        return verdict_row(
            check, "none", slope, ci, unit,
            f"{text}; under the {LEAK_MIN_MB_PER_H:g} MB/h and {floor_mb:.0f} MB that count as a leak",
        )  # fmt: skip
    later = _second_half(t, mb)
    if later is not None and later.slope < LEAK_STILL_RISING * fit.slope:
        return verdict_row(
            check, "none", slope, ci, unit,
            f"{text}; but flat over the second half ({_g(later.slope * 3600)} MB/h): "
            "a one-off step (a cache or an arena grown), not a leak",
        )  # fmt: skip
    return verdict_row(check, "detected", slope, ci, unit, text)


def _second_half(t: np.ndarray, y: np.ndarray) -> Trend | None:
    """The slope over the second half of the readings' span, with a looser block count (3 at least)."""
    keep = np.isfinite(t) & np.isfinite(y)
    if keep.sum() < 6:
        return None
    t, y = t[keep], y[keep]
    late = t >= (t[0] + t[-1]) / 2
    tl, yl = t[late], y[late]
    if len(tl) < 3:
        return None
    tc = tl - tl.mean()
    sxx = float(np.sum(tc**2))
    if sxx == 0:
        return None
    slope = float(np.sum(tc * (yl - yl.mean())) / sxx)
    return Trend(slope, slope, slope, 0, 0.0, float(yl.mean()), float(tl[-1] - tl[0]), math.nan, math.nan)


def device_memory_growth(
    t: np.ndarray, torch_mb: np.ndarray, nvml_mb: np.ndarray, context: str = ""
) -> dict[str, Any]:
    """torch's allocated memory where there is any (exact, this process only); else NVML's used memory of
    the device (every allocator, but other processes too). Detected when either source shows a leak."""
    rows = []
    for label, mb in (("torch device memory", torch_mb), ("NVML device memory", nvml_mb)):
        if np.isfinite(mb).any():
            rows.append(memory_growth("device_mem_growth", label, t, mb, context))
    if not rows:
        return _not_measured(
            "device_mem_growth", "MB/h", f"no device memory readings {context} (CPU, or no NVML)"
        )
    detected = [r for r in rows if r["verdict"] == "detected"]
    chosen = detected[0] if detected else rows[0]
    others = [r["evidence"] for r in rows if r is not chosen]
    if others:
        chosen = {**chosen, "evidence": chosen["evidence"] + "; " + "; ".join(others)}
    return chosen


def throttling(
    t: np.ndarray,
    clock_mhz: np.ndarray,
    temp_c: np.ndarray,
    power_w: np.ndarray,
    temp_limit_c: float = math.nan,
    power_limit_w: float = math.nan,
) -> dict[str, Any]:
    """SM clock drops that coincide with the temperature or power limit (module docstring)."""
    check, unit, nan_ci = "throttling", "MHz", (math.nan, math.nan)
    finite = np.isfinite(t) & np.isfinite(clock_mhz)
    if not finite.any():
        return _not_measured(check, unit, "no SM clock readings (CPU, or no NVML)")
    t, clock, temp, power = t[finite], clock_mhz[finite], temp_c[finite], power_w[finite]
    early = t <= t[0] + EARLY_S
    if early.sum() < MIN_THROTTLED_S or len(t) < 2 * MIN_THROTTLED_S:
        return _not_measured(
            check, unit, f"only {len(t)} SM clock readings; throttling needs {2 * MIN_THROTTLED_S}"
        )
    reference = float(np.median(clock[early]))
    low = clock < reference * (1 - THROTTLE_DROP_PCT / 100)
    with np.errstate(invalid="ignore"):
        at_temp = (
            temp >= temp_limit_c - TEMP_MARGIN_C if math.isfinite(temp_limit_c) else np.zeros(len(t), bool)
        )
        at_power = (
            power >= POWER_MARGIN * power_limit_w if math.isfinite(power_limit_w) else np.zeros(len(t), bool)
        )
    limits = _limits_text(temp, power, temp_limit_c, power_limit_w)
    if low.sum() < MIN_THROTTLED_S:
        return verdict_row(
            check, "none", 0.0, nan_ci, unit,
            f"sm clock steady at {reference:.0f} MHz (min {np.min(clock):.0f}) over {t[-1] - t[0]:.0f} s; {limits}",
        )  # fmt: skip
    throttled = low & (at_temp | at_power)
    if throttled.sum() >= MIN_THROTTLED_S:
        first = int(np.argmax(throttled))
        dropped_to = float(np.median(clock[throttled]))
        causes = []
        if at_temp[throttled].any():
            causes.append(f"temp {np.max(temp[throttled]):.0f} C at limit {temp_limit_c:.0f} C")
        if at_power[throttled].any():
            causes.append(f"power {np.max(power[throttled]):.0f} W at limit {power_limit_w:.0f} W")
        return verdict_row(
            check, "detected", reference - dropped_to, nan_ci, unit,
            f"sm clock {reference:.0f} -> {dropped_to:.0f} MHz from t={t[first]:.0f} s while "
            f"{' and '.join(causes)} ({int(throttled.sum())} of {len(t)} readings)",
        )  # fmt: skip
    dropped_to = float(np.median(clock[low]))
    text = f"sm clock fell {reference:.0f} -> {dropped_to:.0f} MHz in {int(low.sum())} of {len(t)} readings"
    if not (math.isfinite(temp_limit_c) or math.isfinite(power_limit_w)):
        return _not_measured(check, unit, f"{text}, but neither the temperature nor the power limit is known")
    return verdict_row(
        check, "none", reference - dropped_to, nan_ci, unit,
        f"{text} with {limits}: not thermal or power throttling (idle or application clocks)",
    )  # fmt: skip


def _limits_text(temp: np.ndarray, power: np.ndarray, temp_limit_c: float, power_limit_w: float) -> str:
    parts = []
    for what, values, limit, unit in (
        ("temp", temp, temp_limit_c, "C"),
        ("power", power, power_limit_w, "W"),
    ):
        finite = values[np.isfinite(values)]
        peak = f"max {np.max(finite):.0f} {unit}" if len(finite) else "not read"
        bound = f"limit {limit:.0f} {unit}" if math.isfinite(limit) else "limit unknown"
        parts.append(f"{what} {peak} ({bound})")
    return ", ".join(parts)

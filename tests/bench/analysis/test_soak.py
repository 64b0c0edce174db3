"""The soak checks on synthetic one-second series: a leak, a drift, throttling, and flat noise that must be none."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.analysis.soak import CHECKS, MIN_BLOCKS, soak_verdicts, t975, trend

NAN = math.nan


def ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """Stationary AR(1) noise of standard deviation ``sd``: wander that persists ~1/(1-phi) seconds."""
    shocks = rng.normal(0.0, sd * math.sqrt(1 - phi**2), n)
    x = np.empty(n)
    x[0] = rng.normal(0.0, sd)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + shocks[i]
    return x


def series(
    n: int = 900,
    seed: int = 0,
    *,
    qps: float = 50.0,
    qps_per_h: float = 0.0,
    p99_ms_per_h: float = 0.0,
    rss_mb_per_h: float = 0.0,
    gpu: bool = False,
    device_mb_per_h: float = 0.0,
) -> list[dict[str, float]]:
    """``n`` seconds of a server soak: Poisson completions, windowed latencies and memory with AR(1) wander."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, n + 1, dtype=float)
    rate = qps + qps_per_h * t / 3600
    achieved = rng.poisson(rate).astype(float) + ar1(rng, n, 0.9, 1.0)
    p50 = 20 + ar1(rng, n, 0.9, 1.0)
    p99 = 40 + ar1(rng, n, 0.9, 3.0) + p99_ms_per_h * t / 3600
    rss = 800 + ar1(rng, n, 0.98, 2.0) + rss_mb_per_h * t / 3600
    rows = []
    for i in range(n):
        row = {
            "t_s": t[i],
            "achieved_qps": achieved[i],
            "latency_ms_p50": p50[i],
            "latency_ms_p99": p99[i],
            "completed_total": int(qps * t[i]),
            "dropped_total": 0,
            "host_rss_mb": rss[i],
            "torch_device_mem_mb": NAN,
            "nvml_device_mem_mb": NAN,
            "gpu_util_pct": NAN,
            "gpu_power_w": NAN,
            "sm_clock_mhz": NAN,
            "gpu_temp_c": NAN,
            "cpu_util_pct": 60 + rng.normal(0, 3),
            "steal_pct": 0.0,
        }
        rows.append(row)
    if gpu:
        torch_mb = 4000 + device_mb_per_h * t / 3600
        nvml_mb = 5200 + ar1(rng, n, 0.95, 1.0) + device_mb_per_h * t / 3600
        clock = 1980 + rng.choice([-15.0, 0.0, 15.0], n)
        temp = 70 + ar1(rng, n, 0.99, 1.0)
        power = 450 + ar1(rng, n, 0.9, 10.0)
        for i, row in enumerate(rows):
            row.update(
                torch_device_mem_mb=torch_mb[i], nvml_device_mem_mb=nvml_mb[i], gpu_util_pct=95.0,
                gpu_power_w=power[i], sm_clock_mhz=clock[i], gpu_temp_c=temp[i],
            )  # fmt: skip
    return rows


def by_check(rows: list[dict[str, float]], **kwargs: float) -> dict[str, dict[str, object]]:
    verdicts = soak_verdicts(rows, **kwargs)
    assert [v["check"] for v in verdicts] == list(CHECKS)
    return {str(v["check"]): v for v in verdicts}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_flat_noisy_soak_reports_none_for_every_check(seed: int) -> None:
    checks = by_check(series(seed=seed, gpu=True), temp_limit_c=87.0, power_limit_w=700.0)
    for name, row in checks.items():
        assert row["verdict"] == "none", f"{name}: {row['evidence']}"
        assert isinstance(row["evidence"], str) and row["evidence"]


def test_a_linear_rss_leak_is_detected_with_its_slope() -> None:
    truth = 200.0  # MB/h: 50 MB over the 15 minutes
    row = by_check(series(rss_mb_per_h=truth, seed=3))["rss_growth"]
    assert row["verdict"] == "detected", row["evidence"]
    assert row["unit"] == "MB/h"
    assert row["estimate"] == pytest.approx(truth, rel=0.25)
    assert row["ci_low"] < truth < row["ci_high"]
    assert "host RSS" in str(row["evidence"]) and "MB/h" in str(row["evidence"])


def test_a_device_memory_leak_is_detected_from_torch_or_nvml() -> None:
    row = by_check(series(gpu=True, device_mb_per_h=300.0), temp_limit_c=87.0)["device_mem_growth"]
    assert row["verdict"] == "detected", row["evidence"]
    assert row["estimate"] == pytest.approx(300.0, rel=0.1)
    assert "torch device memory" in str(row["evidence"]) and "NVML device memory" in str(row["evidence"])


def test_memory_that_steps_up_once_and_stays_flat_is_not_a_leak() -> None:
    rows = series(seed=4)
    for row in rows:
        if row["t_s"] > 300:
            row["host_rss_mb"] += 60.0
    check = by_check(rows)["rss_growth"]
    assert check["verdict"] == "none", check["evidence"]
    assert "not a leak" in str(check["evidence"])


def test_a_throughput_drift_is_detected_with_its_direction() -> None:
    truth = -40.0  # qps/h: 50 -> 40 over the 15 minutes, a 20% fall
    row = by_check(series(qps_per_h=truth, seed=5))["throughput_drift"]
    assert row["verdict"] == "detected", row["evidence"]
    assert row["unit"] == "qps/h"
    assert row["estimate"] == pytest.approx(truth, rel=0.3)
    assert row["ci_high"] < 0
    assert "fell" in str(row["evidence"])


def test_a_latency_drift_is_detected_on_p99() -> None:
    row = by_check(series(p99_ms_per_h=40.0, seed=6))["latency_drift"]  # +10 ms over 15 min on 40 ms
    assert row["verdict"] == "detected", row["evidence"]
    assert row["estimate"] == pytest.approx(40.0, rel=0.3)
    assert "p99 latency rose" in str(row["evidence"]) and "p50" in str(row["evidence"])


def test_a_small_significant_drift_is_not_material() -> None:
    """A trend the interval is sure of, but 2% of the mean over the soak: under the 5% that counts."""
    rows = series(seed=7, qps=1000.0, qps_per_h=-80.0)  # 1000 -> 980 over 15 min, Poisson noise ~32
    row = by_check(rows)["throughput_drift"]
    assert row["ci_high"] < 0  # significant ...
    assert row["verdict"] == "none"  # ... but immaterial
    assert "within the 5%" in str(row["evidence"])


def gpu_rows(n: int = 600, drop_at: float = 312.0, to_mhz: float = 1650.0) -> list[dict[str, float]]:
    rows = series(n=n, gpu=True)
    for row in rows:
        if row["t_s"] >= drop_at:
            row["sm_clock_mhz"] = to_mhz
            row["gpu_temp_c"] = 87.0
    return rows


def test_thermal_throttling_is_detected_with_the_clock_and_temperature() -> None:
    row = by_check(gpu_rows(), temp_limit_c=87.0, power_limit_w=700.0)["throttling"]
    assert row["verdict"] == "detected", row["evidence"]
    assert row["estimate"] == pytest.approx(330.0, abs=20)
    assert row["unit"] == "MHz"
    assert "sm clock 1980 -> 1650 MHz from t=312 s while temp 87 C at limit 87 C" in str(row["evidence"])


def test_power_throttling_is_detected() -> None:
    rows = series(n=600, gpu=True)
    for row in rows:
        if row["t_s"] >= 200:
            row["sm_clock_mhz"], row["gpu_power_w"] = 1500.0, 699.0
    check = by_check(rows, temp_limit_c=87.0, power_limit_w=700.0)["throttling"]
    assert check["verdict"] == "detected", check["evidence"]
    assert "power 699 W at limit 700 W" in str(check["evidence"])


def test_a_clock_drop_away_from_the_limits_is_not_throttling() -> None:
    rows = gpu_rows()
    for row in rows:
        row["gpu_temp_c"] = 60.0
    check = by_check(rows, temp_limit_c=87.0, power_limit_w=700.0)["throttling"]
    assert check["verdict"] == "none"
    assert "not thermal or power throttling" in str(check["evidence"])


def test_a_clock_drop_without_known_limits_is_not_measured() -> None:
    check = by_check(gpu_rows())["throttling"]
    assert check["verdict"] == "not_measured"
    assert "1980 -> 1650 MHz" in str(check["evidence"]) and "limit is known" in str(check["evidence"])


def test_a_cpu_soak_has_no_gpu_checks() -> None:
    checks = by_check(series())
    for name in ("device_mem_growth", "throttling"):
        assert checks[name]["verdict"] == "not_measured"
        assert math.isnan(float(checks[name]["estimate"]))  # type: ignore[arg-type]
    assert "no SM clock readings" in str(checks["throttling"]["evidence"])


def test_a_short_soak_is_not_measured_and_says_why() -> None:
    checks = by_check(series(n=90, gpu=True), temp_limit_c=87.0)  # 60 s after the 30 s warm-up
    for name in ("throughput_drift", "latency_drift", "rss_growth", "device_mem_growth"):
        assert checks[name]["verdict"] == "not_measured"
        assert "only 60 s" in str(checks[name]["evidence"]), checks[name]["evidence"]


def test_no_rows_is_not_measured_everywhere() -> None:
    for row in soak_verdicts([]):
        assert row["verdict"] == "not_measured"


def test_a_frame_and_a_list_of_rows_give_the_same_verdicts() -> None:
    rows = series(rss_mb_per_h=200.0, seed=3)
    shuffled = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # order does not matter: sorted by t_s
    assert soak_verdicts(shuffled) == soak_verdicts(rows)


def test_the_warm_up_is_left_out() -> None:
    """Only rows from t = warmup_s on are judged: 200 s of a soak is enough after 30 s, not after 100 s."""
    rows = series(n=200, seed=8)
    assert by_check(rows)["rss_growth"]["verdict"] == "none"
    late = by_check(rows, warmup_s=100.0)["rss_growth"]
    assert late["verdict"] == "not_measured"
    assert "only 100 s of host RSS readings after the 100 s warm-up" in str(late["evidence"])
    with pytest.raises(ValueError):
        soak_verdicts(rows, warmup_s=-1.0)


def test_the_drain_after_the_load_is_left_out() -> None:
    """After the last arrival the server drains and the rate falls to 0: not a drift when end_s says so."""
    rows = series(n=660, seed=10)
    for row in rows:
        if row["t_s"] > 600:
            row["achieved_qps"] = 0.0
    assert float(by_check(rows)["throughput_drift"]["estimate"]) < -100  # the drain drags the fit down
    judged = by_check(rows, end_s=600.0)["throughput_drift"]
    assert judged["verdict"] == "none" and abs(float(judged["estimate"])) < 30  # type: ignore[arg-type]
    assert "over 556 s" in str(judged["evidence"])  # block centres from 39.5 s to 595 s: nothing after 600
    with pytest.raises(ValueError):
        soak_verdicts(rows, warmup_s=30.0, end_s=30.0)


def test_trend_needs_enough_blocks_and_covers_a_known_slope() -> None:
    t = np.arange(0, MIN_BLOCKS * 20 - 20, dtype=float)
    assert trend(t, t) is None
    rng = np.random.default_rng(9)
    t = np.arange(0, 1200, dtype=float)
    fit = trend(t, 5.0 + 0.01 * t + rng.normal(0, 1, len(t)))
    assert fit is not None and fit.ci_low < 0.01 < fit.ci_high
    assert fit.blocks == 30 and fit.block_s == pytest.approx(1199 / 30)


def test_t_quantiles() -> None:
    assert t975(1) == pytest.approx(12.706)
    assert t975(10) == pytest.approx(2.228)
    assert t975(500) == pytest.approx(2.042)
    with pytest.raises(ValueError):
        t975(0)

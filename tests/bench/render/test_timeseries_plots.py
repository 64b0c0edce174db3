"""The report's soak figures: one per soak cell, GPU panels only with GPU readings, verdicts in the titles."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from bench.analysis.soak import soak_verdicts
from bench.render.timeseries_plots import PANELS, soak_cell_figure, soak_figures, verdict_title

pytest.importorskip("matplotlib")

NAN = math.nan


def timeseries(cell_id: int, n: int = 300, gpu: bool = False, leak_mb_per_h: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(cell_id)
    t = np.arange(1, n + 1, dtype=float)
    frame = pd.DataFrame(
        {
            "cell_id": cell_id,
            "t_s": t,
            "achieved_qps": rng.poisson(50, n).astype(float),
            "latency_ms_p50": 20 + rng.normal(0, 1, n),
            "latency_ms_p99": 40 + rng.normal(0, 3, n),
            "completed_total": (50 * t).astype(int),
            "dropped_total": 0,
            "host_rss_mb": 800 + rng.normal(0, 1, n) + leak_mb_per_h * t / 3600,
            "torch_device_mem_mb": NAN,
            "nvml_device_mem_mb": NAN,
            "gpu_util_pct": NAN,
            "gpu_power_w": NAN,
            "sm_clock_mhz": NAN,
            "gpu_temp_c": NAN,
            "cpu_util_pct": 60 + rng.normal(0, 2, n),
            "steal_pct": 0.0,
        }
    )
    if gpu:
        frame["torch_device_mem_mb"] = 4000.0
        frame["gpu_power_w"] = 400 + rng.normal(0, 5, n)
        frame["sm_clock_mhz"] = 1980.0
        frame["gpu_temp_c"] = 70.0
    return frame


def cells() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": ["r1", "r1", "r1"],
            "cell_id": [1, 2, 3],
            "model": ["dcgan", "dcgan", "vae"],
            "pipeline": ["fp32", "bf16", "fp32"],
            "device_label": ["cpu", "cpu", "H100"],
            "batch_size": [1, 8, 4],
        }
    )


def image_size(png: bytes) -> tuple[int, int]:
    from matplotlib.image import imread

    height, width = imread(io.BytesIO(png), format="png").shape[:2]
    return width, height


def test_one_figure_per_cell_with_a_time_series() -> None:
    series = pd.concat([timeseries(1), timeseries(3, gpu=True)], ignore_index=True)
    figures = soak_figures(cells(), series)
    assert [caption for caption, _ in figures] == [
        "dcgan fp32 on cpu batch 1 (cell 1): soak time series",
        "vae fp32 on H100 batch 4 (cell 3): soak time series",
    ]  # cell 2 ran no soak: no figure
    for _, png in figures:
        assert png.startswith(b"\x89PNG")
    (_, cpu_png), (_, gpu_png) = figures
    assert image_size(gpu_png)[1] > image_size(cpu_png)[1]  # the GPU's clock, power and temperature panels


def test_cells_of_several_runs_match_on_run_and_cell() -> None:
    two_runs = pd.concat([cells(), cells().assign(run_id="r2")], ignore_index=True)
    series = pd.concat([timeseries(1).assign(run_id="r2")], ignore_index=True)
    figures = soak_figures(two_runs, series)
    assert len(figures) == 1  # r1's cell 1 has no series; r2's has


def test_the_figure_is_deterministic_and_shows_verdicts() -> None:
    series = timeseries(1, n=600, leak_mb_per_h=600.0)
    verdicts = pd.DataFrame(soak_verdicts(series)).assign(cell_id=1)
    assert (verdicts.set_index("check").loc["rss_growth", "verdict"]) == "detected"
    first = soak_figures(cells(), series, verdicts)
    again = soak_figures(cells(), series, verdicts)
    assert first == again  # same series, same bytes
    without = soak_figures(cells(), series)
    assert first[0][1] != without[0][1]  # the verdicts and the leak's trend line are drawn
    caption = first[0][0]
    assert caption.startswith(
        "dcgan fp32 on cpu batch 1 (cell 1): soak time series; rss_growth detected: host RSS"
    )
    assert "MB/h" in caption and "throughput_drift" not in caption  # only what was detected


def test_verdict_titles() -> None:
    detected = {"verdict": "detected", "estimate": 167.4, "unit": "MB/h"}
    assert verdict_title("rss_growth", detected) == "rss_growth: detected, 167 MB/h"
    assert (
        verdict_title("throttling", {"verdict": "not_measured", "estimate": NAN})
        == "throttling: not measured"
    )
    assert verdict_title("throttling", None) == ""


def test_nothing_to_draw_is_no_figure() -> None:
    assert soak_figures(cells(), pd.DataFrame()) == []
    assert soak_cell_figure(pd.DataFrame({"t_s": []})) is None
    empty = timeseries(1).assign(**{c: NAN for _, cols, _, _, _ in PANELS for c, _ in cols})
    assert soak_cell_figure(empty) is None

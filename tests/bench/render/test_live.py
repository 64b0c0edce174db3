"""The soak's live panel, rendered to text without a terminal, and the follower that tails the live file."""

from __future__ import annotations

import io
import math
import threading
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.measure.monitor import PROBE_COLUMNS, LiveFile
from bench.render.live import BARS, SoakPanel, follow_live, soak_panel, sparkline

NAN = math.nan


def rows(n: int, gpu: bool = False) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        row: dict[str, Any] = {c: NAN for c in PROBE_COLUMNS}
        row |= {
            "t_s": float(i + 1), "achieved_qps": 40.0 + i, "latency_ms_p50": 12.0, "latency_ms_p99": 30.0 + i,
            "completed_total": 40 * (i + 1), "dropped_total": 2, "host_rss_mb": 700.0 + i, "cpu_util_pct": 55.0,
        }  # fmt: skip
        if gpu:
            row |= {"gpu_power_w": 300.0 + i, "sm_clock_mhz": 1980.0, "gpu_temp_c": 65.0}
        out.append(row)
    return out


def text_of(renderable: Any, width: int = 140) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_sparkline_scales_from_lowest_to_highest() -> None:
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == BARS
    assert sparkline([5.0, 5.0, 5.0]) == BARS[0] * 3  # flat is flat
    assert sparkline([1.0, NAN, None, 2.0]) == BARS[0] + "  " + BARS[-1]  # a gap is a gap
    assert sparkline([NAN, NAN]) == "  "
    assert len(sparkline(list(range(200)), width=60)) == 60  # the latest 60


def test_the_panel_shows_current_values_and_sparklines() -> None:
    text = text_of(soak_panel(rows(90), title="dcgan fp32 soak"))
    assert "dcgan fp32 soak" in text
    assert "t = 90 s" in text and "completed 3,600" in text and "dropped 2" in text
    throughput = next(line for line in text.splitlines() if "throughput" in line)
    assert "129 req/s" in throughput  # the latest value
    assert "70 .. 129" in throughput  # the range over the last 60 s, not the whole soak
    assert BARS[0] in throughput and BARS[-1] in throughput
    assert "host RSS" in text and "789 MB" in text


def test_gpu_lines_appear_only_with_gpu_readings() -> None:
    cpu = text_of(soak_panel(rows(10)))
    assert "GPU power" not in cpu and "SM clock" not in cpu and "device mem" not in cpu
    gpu = text_of(soak_panel(rows(10, gpu=True)))
    assert "309 W" in gpu and "1,980 MHz" in gpu and "65 C" in gpu


def test_no_rows_yet_is_a_waiting_panel() -> None:
    assert "waiting for the first reading" in text_of(soak_panel([]))


def test_soak_panel_keeps_only_the_history_it_draws() -> None:
    panel = SoakPanel("soak", history_s=60.0)
    panel.add(rows(50))
    panel.add(rows(120)[50:])
    assert len(panel.rows) == 60 and panel.rows[0]["t_s"] == 61.0
    assert "t = 120 s" in text_of(panel)


def test_follow_live_reads_the_file_until_stopped(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    live = LiveFile(path)
    for row in rows(5):
        live.on_row(row)
    stop = threading.Event()
    console = Console(file=io.StringIO(), width=120, color_system=None, force_terminal=False)
    result: list[SoakPanel] = []
    follower = threading.Thread(target=lambda: result.append(follow_live(path, console, stop, "soak", 0.02)))
    follower.start()
    for row in rows(8)[5:]:
        live.on_row(row)
    live.close()
    stop.set()
    follower.join(timeout=10)
    assert result and [r["t_s"] for r in result[0].rows] == [float(i) for i in range(1, 9)]
    assert "t = 8 s" in text_of(result[0])

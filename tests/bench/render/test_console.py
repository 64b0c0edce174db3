import math

from rich.console import Console

from bench.render.console import summary_tables, with_speedup
from bench.results.schema import cells_frame


def _row(
    cell_id: int, pipeline: str, tp: float, psnr: float, status: str = "ok", reason: str | None = None
) -> dict:
    return {
        "cell_id": cell_id, "model": "unet", "size": "tiny", "device": "cpu", "device_name": "cpu", "item": "image",
        "pipeline": pipeline, "batch_size": 2, "status": status, "reason": reason, "throughput_items_s": tp,
        "latency_ms_p50": 2000 / tp if tp else None, "psnr_db": psnr, "fidelity_ok": psnr >= 30 if status == "ok" else None,
        "noisy": False, "peak_host_rss_mb": 100.0,
    }  # fmt: skip


def test_speedup_is_relative_to_fp32_of_the_same_cell_key() -> None:
    frame = with_speedup(cells_frame([_row(0, "fp32", 10.0, math.inf), _row(1, "int8", 25.0, 40.0)]))
    assert list(frame["speedup_vs_fp32"]) == [1.0, 2.5]


def test_table_flags_low_psnr_and_numbers_reasons() -> None:
    frame = cells_frame(
        [
            _row(0, "fp32", 10.0, math.inf),
            _row(1, "prune:0.5", 30.0, 18.0),
            _row(2, "fp16", 0.0, math.nan, status="skipped", reason="fp16: no native fp16"),
        ]
    )
    console = Console(width=200, record=True)
    for table in summary_tables(frame):
        console.print(table)
    text = console.export_text()
    assert "ok, low PSNR" in text
    assert "skipped [1]" in text and "[1] fp16: no native fp16" in text
    assert "3.00x" in text

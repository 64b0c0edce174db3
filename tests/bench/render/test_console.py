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


def _text(frame, width: int = 250) -> str:
    console = Console(width=width, record=True)
    for table in summary_tables(frame, width=width):
        console.print(table)
    return console.export_text()


def _generate_row(cell_id: int, pipeline: str, tokens_s: float, batch: int = 1, **extra) -> dict:
    """A gpt cell whose throughput_items_s differs from output_tokens_s: the speedup must use the latter."""
    row = {
        "cell_id": cell_id, "model": "gpt", "size": "tiny", "device": "cpu", "device_name": "cpu", "item": "token",
        "workload": "generate", "pipeline": pipeline, "batch_size": batch, "status": "ok", "noisy": False,
        "throughput_items_s": 100.0, "output_tokens_s": tokens_s, "latency_ms_p50": 77.7, "prompt_len": 32,
        "new_tokens": 16, "kv_cache": "static", "ttft_ms": 12.5, "tpot_ms": 3.25, "itl_ms_p99": 4.75,
        "decode_gb_s": 12.3, "pct_of_bandwidth": 45.6, "kv_cache_mb": 1.5, "token_match": 0.984,
        "fidelity_ok": True, "peak_host_rss_mb": 100.0,
    }  # fmt: skip
    row.update(extra)
    return row


def _sample_row(cell_id: int, pipeline: str, s_per_image: float, **extra) -> dict:
    """An ldm cell (10 steps at batch 1): 10 x UNet + VAE + sampler = s/image."""
    unet = (s_per_image * 1e3 - 50.0) / 10
    row = {
        "cell_id": cell_id, "model": "ldm", "size": "tiny", "device": "cpu", "device_name": "cpu", "item": "image",
        "workload": "sample", "pipeline": pipeline, "batch_size": 1, "status": "ok", "noisy": False,
        "throughput_items_s": 100.0, "s_per_image": s_per_image, "images_s": 1 / s_per_image,
        "it_s": 10 / s_per_image, "steps": 10, "guidance": 7.5, "sampler": "ddim", "unet_step_ms": unet,
        "vae_decode_ms": 30.0, "sampler_overhead_ms": 20.0, "psnr_db": 48.25, "fidelity_ok": True,
        "peak_host_rss_mb": 100.0,
    }  # fmt: skip
    row.update(extra)
    return row


def _headers(table) -> list[str]:
    return [str(column.header) for column in table.columns]


def test_generate_table_shows_generation_columns_and_speedup_on_output_tokens() -> None:
    frame = cells_frame(
        [
            _generate_row(0, "fp32", 1234.5),
            _generate_row(1, "bf16", 2469.0),
            _generate_row(2, "int8wo", 617.25, token_match=0.5, fidelity_ok=False),
            _generate_row(3, "fp16", math.nan, status="skipped", reason="fp16: needs a CUDA device"),
        ]
    )
    assert list(with_speedup(frame)["speedup_vs_fp32"])[:3] == [1.0, 2.0, 0.5]  # not throughput_items_s's 1.0
    (table,) = summary_tables(frame, width=250)
    assert _headers(table) == [
        "pipeline", "batch", "output tokens/s", "speedup", "TTFT ms", "TPOT ms", "ITL p99 ms", "decode GB/s",
        "% of copy BW", "KV cache MB", "token match", "status",
    ]  # fmt: skip
    text = _text(frame)
    assert "prompt 32 + 16 new tokens, static KV cache" in text  # the title says what one call was
    for expected in ("1,234.5", "2,469.0", "2.00x", "0.50x", "12.50", "3.25", "4.75", "12.3", "45.6%", "1.5"):
        assert expected in text, expected
    assert "98.4%" in text and "50.0%" in text
    assert "ok, low token match" in text and "low PSNR" not in text
    assert "skipped [1]" in text and "[1] fp16: needs a CUDA device" in text
    assert "p50 ms" not in text and "77.7" not in text  # the forward table's columns are not there


def test_sample_table_shows_the_split_and_speedup_on_seconds_per_image() -> None:
    frame = cells_frame(
        [_sample_row(0, "fp32", 0.5), _sample_row(1, "bf16", 0.25, psnr_db=21.0, fidelity_ok=False)]
    )
    assert list(with_speedup(frame)["speedup_vs_fp32"]) == [1.0, 2.0]  # half the s/image: twice as fast
    (table,) = summary_tables(frame, width=250)
    assert _headers(table) == [
        "pipeline", "batch", "s/image", "images/s", "speedup", "it/s", "UNet ms/step", "VAE ms",
        "sampler overhead ms", "PSNR dB", "status",
    ]  # fmt: skip
    text = _text(frame)
    assert "10 ddim steps, guidance 7.5" in text
    for expected in (
        "0.500",
        "0.250",
        "2.00",
        "4.00",
        "2.00x",
        "20.0",
        "40.0",
        "45.00",
        "20.00",
        "30.00",
        "48.2",
    ):
        assert expected in text, expected
    assert "ok, low PSNR" in text


def test_forward_table_keeps_its_columns_beside_other_workloads() -> None:
    frame = cells_frame(
        [_row(0, "fp32", 10.0, math.inf), _generate_row(1, "fp32", 50.0), _sample_row(2, "fp32", 0.5)]
    )
    forward, generate, sample = summary_tables(frame, width=250)
    assert _headers(forward) == [
        "pipeline",
        "batch",
        "p50 ms",
        "image/s",
        "speedup",
        "peak MB",
        "PSNR dB",
        "status",
    ]
    assert "output tokens/s" in _headers(generate) and "s/image" in _headers(sample)


def test_narrow_generate_table_leaves_out_the_lowest_ranked_columns_first() -> None:
    frame = cells_frame([_generate_row(0, "fp32", 1234.5), _generate_row(1, "bf16", 2469.0)])
    text = _text(frame, width=80)
    assert "KV cache MB" in text.split("left out at this width:")[1]  # left out first, and said
    for kept in ("tokens/s", "TTFT", "TPOT", "token", "match", "98.4%"):
        assert kept in text, kept
    assert max(len(line) for line in text.splitlines()) <= 80

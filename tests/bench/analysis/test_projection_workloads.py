"""Projection of the generate and sample workloads: a generation's decode on the bandwidth roof and its
prefill on the compute roof, a sampling run on the compute roof, each row naming its bound; the
torchao precisions' peaks.

The cells are hand-made with round numbers, so each expected figure is worked out in the test.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.analysis.projection import add_check, efficiencies, project
from bench.analysis.roofline import PhaseWork, peak_precision, phase_work, roofline
from bench.analysis.source import Source
from bench.cli import main
from bench.hardware.catalog import load_catalog
from bench.results.schema import cells_frame
from tests.bench.analysis.test_projection import SOURCE, TARGET, device, write_run

PARAMS = 1e8  # fp32: 4e8 bytes of weights
WEIGHTS = 4.0 * PARAMS
PROMPT, NEW = 128, 64
KV_PER_TOKEN = 1e5  # bytes of keys and values per token of one sequence
KV_PER_SEQUENCE = KV_PER_TOKEN * (PROMPT + NEW)  # a static cache holds prompt + new positions


def gen_row(
    spec: Any,
    decode_eff: float = 0.5,
    prefill_eff: float = 0.4,
    batch: int = 1,
    pipeline: str = "fp32",
    precision: str = "fp32",
    device_name: str = "SYNTH",
    cell_id: int = 0,
) -> dict[str, Any]:
    """A generate row whose decode runs at ``decode_eff`` of ``spec``'s bandwidth, prefill at ``prefill_eff`` of its peak."""
    step_bytes = WEIGHTS + batch * KV_PER_SEQUENCE
    gb_s = decode_eff * spec.bandwidth_bytes_s / 1e9
    tpot = step_bytes / (gb_s * 1e9) * 1e3
    peak = spec.peak_flops("tf32" if precision == "fp32" and spec.peak_flops("tf32") else precision)
    ttft = 2 * PARAMS * PROMPT * batch / (prefill_eff * peak) * 1e3
    e2e = ttft + (NEW - 1) * tpot
    return {
        "run_id": "synthetic", "cell_id": cell_id, "device": "cuda:0", "device_name": device_name, "model": "gpt",
        "size": "tiny", "family": "llm", "pipeline": pipeline, "batch_size": batch, "precision": precision,
        "status": "ok", "item": "token", "workload": "generate", "prompt_len": PROMPT, "new_tokens": NEW,
        "kv_cache": "static", "params": int(PARAMS), "model_bytes": int(WEIGHTS), "gflops_per_item": 2 * PARAMS / 1e9,
        "ttft_ms": ttft, "tpot_ms": tpot, "e2e_ms": e2e, "decode_gb_s": gb_s, "pct_of_bandwidth": 100 * decode_eff,
        "kv_cache_mb": batch * KV_PER_SEQUENCE / 2**20, "throughput_items_s": batch * NEW / (e2e / 1e3),
        "prefill_tokens_s": batch * PROMPT / (ttft / 1e3), "latency_ms_p50": e2e,
    }  # fmt: skip


def sample_row(spec: Any, eff: float = 0.3, batch: int = 2, cell_id: int = 0) -> dict[str, Any]:
    """A sample row (50 GFLOP per image, no bytes traced) at ``eff`` of ``spec``'s fp32 peak."""
    images_s = eff * spec.peak_flops("fp32") / 50e9
    return {
        "run_id": "synthetic", "cell_id": cell_id, "device": "cuda:0", "device_name": "SYNTH", "model": "ldm",
        "size": "tiny", "family": "diffusion", "pipeline": "fp32", "batch_size": batch, "precision": "fp32",
        "status": "ok", "item": "image", "workload": "sample", "steps": 10, "guidance": 7.5, "sampler": "ddim",
        "params": int(PARAMS), "model_bytes": int(WEIGHTS), "gflops_per_item": 50.0, "throughput_items_s": images_s,
        "latency_ms_p50": batch / images_s * 1e3,
    }  # fmt: skip


WIDE = device("wide", fp32=1e12, bandwidth=4e11)  # SOURCE's fp32 peak, 4x its bandwidth
FAST = device("fast", fp32=4e12, bandwidth=1e11)  # 4x SOURCE's fp32 peak, its bandwidth


def rows(frame: pd.DataFrame, **where: Any) -> pd.DataFrame:
    for column, value in where.items():
        frame = frame[frame[column] == value]
    return frame


# ----------------------------------------------------------------- the phases' work, by hand
def test_decode_reads_the_measured_bytes_per_step() -> None:
    row = pd.Series(gen_row(SOURCE, batch=2))
    work = phase_work(row, "decode")
    assert isinstance(work, PhaseWork)
    assert work.flops_per_item == pytest.approx(2 * PARAMS)  # one token of one sequence
    assert work.traffic.moved_fixed == pytest.approx(WEIGHTS)  # weights once per step
    assert work.traffic.moved_per_item == pytest.approx(KV_PER_SEQUENCE)  # each sequence's cache
    assert work.traffic.bytes_per_item(2) * 2 == pytest.approx(
        row["decode_gb_s"] * row["tpot_ms"] / 1e3 * 1e9
    )
    assert work.measured_items_s == pytest.approx(2 / (row["tpot_ms"] / 1e3))
    prefill = phase_work(row, "prefill")
    assert isinstance(prefill, PhaseWork) and prefill.items_per_sequence == PROMPT
    assert prefill.traffic.moved_per_item == pytest.approx(KV_PER_TOKEN)
    assert prefill.traffic.bytes_per_item(2) == pytest.approx(KV_PER_TOKEN + WEIGHTS / (PROMPT * 2))
    assert prefill.measured_items_s == pytest.approx(row["prefill_tokens_s"])


def test_a_generation_without_decode_steps_says_what_is_missing() -> None:
    row = pd.Series({**gen_row(SOURCE), "tpot_ms": math.nan, "decode_gb_s": math.nan})
    reason = phase_work(row, "decode")
    assert isinstance(reason, str) and "tpot_ms, decode_gb_s" in reason
    frame = project(
        cells_frame([gen_row(SOURCE) | {"tpot_ms": None, "decode_gb_s": None}]), Source(SOURCE, "t"), [WIDE]
    )
    assert rows(frame, phase="decode")["status"].tolist() == ["no-profile"]
    assert rows(frame, phase="prefill")["status"].tolist() == ["ok"]


# ----------------------------------------------------------------- generate
def test_memory_bound_decode_scales_with_the_bandwidth_ratio() -> None:
    cells = cells_frame([gen_row(SOURCE)])
    eff = efficiencies(cells, SOURCE).set_index("phase")
    assert eff.loc["decode", "efficiency"] == pytest.approx(0.5)  # decode GB/s / the source's bandwidth
    assert eff.loc["decode", "efficiency"] == pytest.approx(cells.loc[0, "pct_of_bandwidth"] / 100)
    frame = project(cells, Source(SOURCE, "t"), [SOURCE, WIDE, FAST])
    decode = rows(frame, phase="decode").set_index("target")
    assert (decode["bound"] == "memory (decode)").all()
    tpot = cells.loc[0, "tpot_ms"]
    assert decode.loc["source", "latency_ms"] == pytest.approx(tpot)  # round trip
    assert decode.loc["wide", "latency_ms"] == pytest.approx(
        tpot / 4
    )  # 4x the bandwidth: a quarter of the TPOT
    assert decode.loc["wide", "throughput_items_s"] == pytest.approx(
        4 * decode.loc["source", "throughput_items_s"]
    )
    assert decode.loc["fast", "latency_ms"] == pytest.approx(
        tpot
    )  # more FLOP/s does not help a memory-bound step
    expected = (WEIGHTS + KV_PER_SEQUENCE) / (0.5 * WIDE.bandwidth_bytes_s) * 1e3
    assert decode.loc["wide", "latency_ms"] == pytest.approx(expected)


def test_prefill_is_bounded_by_compute() -> None:
    cells = cells_frame([gen_row(SOURCE)])
    frame = project(cells, Source(SOURCE, "t"), [SOURCE, WIDE, FAST])
    prefill = rows(frame, phase="prefill").set_index("target")
    assert (prefill["bound"] == "compute (prefill)").all()
    ttft = cells.loc[0, "ttft_ms"]
    assert prefill.loc["source", "latency_ms"] == pytest.approx(ttft)  # latency of a prefill row is TTFT
    assert prefill.loc["wide", "latency_ms"] == pytest.approx(ttft)  # bandwidth does not help it
    assert prefill.loc["fast", "latency_ms"] == pytest.approx(ttft / 4)  # 4x the FLOP/s
    assert prefill.loc["fast", "gflops_per_item"] == pytest.approx(2 * PARAMS / 1e9)  # per prompt token
    assert prefill.loc["fast", "latency_ms"] == pytest.approx(2 * PARAMS * PROMPT / (0.4 * 4e12) * 1e3)


def test_decode_at_another_batch_reads_the_weights_once_and_each_sequences_cache() -> None:
    frame = project(cells_frame([gen_row(SOURCE)]), Source(SOURCE, "t"), [WIDE], batch_sizes=(4,))
    decode = rows(frame, phase="decode").iloc[0]
    step = WEIGHTS + 4 * KV_PER_SEQUENCE
    assert decode["latency_ms"] == pytest.approx(step / (0.5 * WIDE.bandwidth_bytes_s) * 1e3)
    assert decode["throughput_items_s"] == pytest.approx(4 / (decode["latency_ms"] / 1e3))
    # memory: weights + the whole cache of 4 sequences (x 1.1 workspace) + the GPU's 1 GiB reserve
    assert decode["mem_needed_gib"] * 2**30 == pytest.approx(WEIGHTS + 4 * KV_PER_SEQUENCE * 1.1 + 2**30)


def test_settings_keep_calibrations_apart_and_the_check_matches_phases() -> None:
    cells = cells_frame(
        [gen_row(SOURCE, decode_eff=0.5), gen_row(SOURCE, decode_eff=0.2, cell_id=1) | {"new_tokens": 16}]
    )
    frame = project(cells, Source(SOURCE, "t"), [WIDE])
    decode = rows(frame, phase="decode").set_index("settings")["efficiency"]
    assert decode.to_dict() == pytest.approx(
        {"prompt 128 + 64 new tokens, static cache": 0.5, "prompt 128 + 16 new tokens, static cache": 0.2}
    )
    measured = cells_frame(
        [gen_row(WIDE, decode_eff=0.25, prefill_eff=0.4)]
    )  # the "target run": decode 2x slower
    checked = add_check(
        project(cells_frame([gen_row(SOURCE)]), Source(SOURCE, "t"), [WIDE]), measured, "wide"
    )
    errors = checked.set_index("phase")["error_pct"]
    assert errors["decode"] == pytest.approx(100.0) and errors["prefill"] == pytest.approx(0.0)


# ----------------------------------------------------------------- sample
def test_a_sampling_run_projects_on_the_compute_roof_alone() -> None:
    cells = cells_frame([sample_row(SOURCE)])
    frame = project(cells, Source(SOURCE, "t"), [SOURCE, WIDE, FAST]).set_index("target")
    assert (frame["bound"] == "compute (sample)").all() and (frame["phase"] == "sample").all()
    assert frame.loc["source", "throughput_items_s"] == pytest.approx(cells.loc[0, "throughput_items_s"])
    assert frame.loc["wide", "throughput_items_s"] == pytest.approx(frame.loc["source", "throughput_items_s"])
    assert frame.loc["fast", "throughput_items_s"] == pytest.approx(
        4 * frame.loc["source", "throughput_items_s"]
    )
    assert frame.loc["fast", "latency_ms"] == pytest.approx(2 / frame.loc["fast", "throughput_items_s"] * 1e3)
    assert "bytes are not traced" in frame.loc["fast", "reason"]
    assert pd.isna(frame.loc["fast", "max_batch"]) and bool(frame.loc["fast", "fits"])
    assert math.isnan(frame.loc["fast", "mb_moved_per_item"])


# ----------------------------------------------------------------- torchao precisions
def test_torchao_precisions_run_at_the_peak_of_what_they_compute_in() -> None:
    h100 = load_catalog().devices["h100-sxm"]
    assert peak_precision("int8-wo", h100, pipeline="bf16+int8wo") == ("bf16", "")  # activations bf16
    assert peak_precision("int8-wo", h100, pipeline="int8wo") == ("tf32", "")  # fp32 activations
    assert peak_precision("int8-wo", h100, fp32_as="fp32", pipeline="int8wo+compile") == ("fp32", "")
    assert peak_precision("int8-dq", h100, pipeline="int8dq") == ("int8", "")
    assert peak_precision("int4-wo", h100, pipeline="bf16+int4wo:64") == ("bf16", "")
    cells = cells_frame(
        [
            gen_row(SOURCE, precision="bf16", pipeline="bf16")
            | {"precision": "int8-wo", "pipeline": "bf16+int8wo"}
        ]
    )
    frame = project(cells, Source(SOURCE, "t"), [TARGET])  # TARGET has a bf16 peak (and a TF32 one)
    assert set(frame["target_precision"]) == {"bf16"} and (frame["status"] == "ok").all()


# ----------------------------------------------------------------- the command line
def test_project_command_on_a_generate_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    l4 = load_catalog().devices["l4"]
    h100 = load_catalog().devices["h100-sxm"]
    run = write_run(tmp_path / "gpt-run", cells_frame([gen_row(l4, device_name="NVIDIA L4")]))
    assert main(["project", "--from", str(run), "--targets", "self,h100-sxm", "--check", str(run)]) == 0
    out = capsys.readouterr().out
    assert "memory (decode)" in out and "TPOT" in out and "median |error| 0.0%" in out and "2 rows" in out
    frame = pd.read_csv(run / "projection.csv")
    decode = rows(frame, phase="decode").set_index("target")
    ratio = decode.loc["l4", "latency_ms"] / decode.loc["h100-sxm", "latency_ms"]
    assert ratio == pytest.approx(h100.bandwidth_bytes_s / l4.bandwidth_bytes_s)
    assert set(frame["bound"]) >= {"memory (decode)"} and set(frame["phase"]) == {"prefill", "decode"}


def test_roofline_of_a_decode_step_is_below_the_ridge() -> None:
    """Why decode is memory-bound at the batches served: 2 FLOPs per weight against 4 bytes of it."""
    work = phase_work(pd.Series(gen_row(SOURCE)), "decode")
    assert isinstance(work, PhaseWork)
    bound = roofline(work.flops_per_item, work.traffic.bytes_per_item(1), 1e12, 1e11)
    assert bound.bound == "memory" and bound.intensity < 1 < bound.ridge

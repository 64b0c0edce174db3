"""The tidy results schema: one row per cell, one column per variable, units in the column names.

The columns and their dtypes, the version, the columns added since older versions
(so tables an older genbench wrote read back with them empty), the statuses, and the
key that says which cell a row is. Nothing here writes or reads files.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from bench.core.statuses import STATUSES

SCHEMA_VERSION = 6

#: column -> pandas dtype. Nullable dtypes, because a skipped cell has no latency.
CELL_COLUMNS: dict[str, str] = {
    "run_id": "string",
    "cell_id": "Int64",
    "started_at": "string",
    "host": "string",
    "device": "string",
    "device_name": "string",
    "hw_id": "string",  # short hash of the hardware fingerprint (bench.measure.fingerprint)
    "model": "string",
    "size": "string",
    "family": "string",
    "pipeline": "string",
    "runtime": "string",
    "batch_size": "Int64",
    "precision": "string",
    "status": "string",  # ok | skipped | error | oom | crashed | timeout
    "reason": "string",
    "n_samples": "Int64",
    "latency_ms_p50": "float64",
    "latency_ms_p90": "float64",
    "latency_ms_p99": "float64",
    "latency_ms_mean": "float64",
    "latency_ms_std": "float64",
    "latency_ms_min": "float64",
    "latency_ci95_rel": "float64",
    "noisy": "boolean",
    "host_busy_pct": "float64",  # other processes' CPU use during the timed region, % of the cell's cores
    "contended": "boolean",
    "steal_pct": "float64",
    "load_avg_1m": "float64",
    "gpu_other_procs": "Int64",
    "throughput_items_s": "float64",
    "item": "string",
    "workload": "string",  # forward | generate | sample: what one timed call (a latency sample) is
    "scenario": "string",  # single-stream | offline | server
    "target_qps": "float64",  # server: the offered Poisson rate
    "first_call_ms": "float64",
    "transfer_h2d_ms": "float64",
    "transfer_d2h_ms": "float64",
    "includes_transfers": "boolean",
    "build_s": "float64",
    "peak_device_mem_mb": "float64",
    "peak_device_reserved_mb": "float64",
    "peak_host_rss_mb": "float64",
    "rss_baseline_mb": "float64",  # an empty worker's RSS: the runtime's share of peak_host_rss_mb
    "nvml_process_mem_mb": "float64",
    "model_bytes": "Int64",
    "params": "Int64",
    "gflops_per_item": "float64",
    "mb_moved_per_item": "float64",
    "mb_moved_fixed": "float64",
    "activation_mb_per_item": "float64",
    "activation_mb_fixed": "float64",
    "achieved_gflops": "float64",
    "pct_of_peak": "float64",
    "energy_j_per_item": "float64",
    "avg_power_w": "float64",
    "sm_clock_mhz_start": "float64",
    "sm_clock_mhz_end": "float64",
    "gpu_temp_c_start": "float64",
    "gpu_temp_c_end": "float64",
    "psnr_db": "float64",
    "max_abs_err": "float64",
    "cosine": "float64",
    "fidelity_ok": "boolean",
    # the generate workload (bench.measure.generation says each definition)
    "prompt_len": "Int64",
    "new_tokens": "Int64",
    "kv_cache": "string",  # static | dynamic
    "ttft_ms": "float64",
    "tpot_ms": "float64",
    "itl_ms_p50": "float64",
    "itl_ms_p99": "float64",
    "e2e_ms": "float64",
    "output_tokens_s": "float64",
    "tokens_s_per_seq": "float64",
    "prefill_tokens_s": "float64",
    "kv_cache_mb": "float64",
    "decode_gb_s": "float64",
    "pct_of_bandwidth": "float64",
    "energy_j_per_token_prefill": "float64",
    "energy_j_per_token_decode": "float64",
    "token_match": "float64",
    "kl_div": "float64",
    "greedy_match_len": "float64",
    # the sample workload (bench.measure.diffusion)
    "steps": "Int64",
    "guidance": "float64",
    "sampler": "string",
    "s_per_image": "float64",
    "images_s": "float64",
    "it_s": "float64",
    "unet_step_ms": "float64",
    "vae_decode_ms": "float64",
    "sampler_overhead_ms": "float64",
    # the serving scenarios (bench.serving): a server row's latency columns are its requests' latencies
    # from scheduled arrival, its n_samples the measured requests, its throughput the achieved rate
    "achieved_qps": "float64",
    "queue_ms_p50": "float64",
    "queue_ms_p99": "float64",
    "mean_batch": "float64",
    "dropped": "Int64",
    "overloaded": "boolean",
    "slo_p99_ms": "float64",
    "slo_met": "boolean",
    "goodput_qps": "float64",
    "peak_qps": "float64",
    "probes": "Int64",
    "load_s": "float64",
    "max_queue_delay_ms": "float64",
    "best_batch_size": "Int64",
    "soak_s": "float64",
    "soak_verdicts": "string",
    "threads": "Int64",
    "isolation": "string",  # process | none
    "repeat": "Int64",
    "torch_version": "string",
    "git_sha": "string",
    "notes": "string",
}
#: columns added after schema 1, with the version that added them: a table written before
#: them (a nightly baseline recorded by an older genbench) reads back with them empty.
COLUMNS_SINCE: dict[str, int] = {
    "peak_device_reserved_mb": 2,
    "mb_moved_per_item": 3,
    "mb_moved_fixed": 3,
    "activation_mb_per_item": 3,
    "activation_mb_fixed": 3,
    **dict.fromkeys(
        (
            "hw_id",
            "host_busy_pct",
            "contended",
            "steal_pct",
            "load_avg_1m",
            "gpu_other_procs",
            "rss_baseline_mb",
            "threads",
            "isolation",
            "repeat",
        ),
        4,
    ),  # fmt: skip
    **dict.fromkeys(
        (
            "workload",
            "prompt_len",
            "new_tokens",
            "kv_cache",
            "ttft_ms",
            "tpot_ms",
            "itl_ms_p50",
            "itl_ms_p99",
            "e2e_ms",
            "output_tokens_s",
            "tokens_s_per_seq",
            "prefill_tokens_s",
            "kv_cache_mb",
            "decode_gb_s",
            "pct_of_bandwidth",
            "energy_j_per_token_prefill",
            "energy_j_per_token_decode",
            "token_match",
            "kl_div",
            "greedy_match_len",
            "steps",
            "guidance",
            "sampler",
            "s_per_image",
            "images_s",
            "it_s",
            "unet_step_ms",
            "vae_decode_ms",
            "sampler_overhead_ms",
        ),
        5,
    ),  # fmt: skip
}
COLUMNS_SINCE.update(
    dict.fromkeys(
        (
            "scenario",
            "target_qps",
            "achieved_qps",
            "queue_ms_p50",
            "queue_ms_p99",
            "mean_batch",
            "dropped",
            "overloaded",
            "slo_p99_ms",
            "slo_met",
            "goodput_qps",
            "peak_qps",
            "probes",
            "load_s",
            "max_queue_delay_ms",
            "best_batch_size",
            "soak_s",
            "soak_verdicts",
        ),
        6,
    )  # fmt: skip
)
#: what a row written before schema 6 ran: one call at a time
DEFAULT_SCENARIO = "single-stream"
#: what a row written before schema 5 held: every cell timed one forward call
DEFAULT_WORKLOAD = "forward"
#: ``phase`` says what a sample times: the workload's whole call (``forward``, ``generate``, ``sample``:
#: the cell's latency samples, one per ``iter``) or a step inside it (``prefill``, ``decode`` of a
#: generation; ``unet``, ``vae`` of a sampling run), ``step`` its index within the call
SAMPLE_COLUMNS: dict[str, str] = {
    "cell_id": "Int64",
    "iter": "Int64",
    "phase": "string",
    "step": "Int64",
    "latency_ms": "float64",
}
#: the phases that are whole calls: the samples compare's bootstrap resamples
CALL_PHASES: tuple[str, ...] = ("forward", "generate", "sample")
#: sample columns added after schema 1: a samples.csv written before them reads back as forward calls
SAMPLE_DEFAULTS: dict[str, Any] = {"phase": "forward", "step": 0}
#: the serving scenarios' tables, one row per: request (``requests.csv``), load probed (``probes.csv``),
#: second of a soak (``timeseries.csv``) and soak check (``soak.csv``); every row names its cell.
#: Times in requests.csv are seconds on the serving clock from the load's start (scheduled arrival 0 = start).
REQUEST_COLUMNS: dict[str, str] = {
    "cell_id": "Int64",
    "probe": "Int64",  # which load of the cell (a find-peak search probes several), from 0
    "request_id": "Int64",
    "warmup": "boolean",  # arrived during the warm-up: served, not counted
    "arrival_s": "float64",  # scheduled arrival (Poisson): latency is counted from here
    "issued_s": "float64",  # when the load generator actually put it in the queue
    "start_s": "float64",  # its batch started
    "end_s": "float64",  # its batch finished (NaN: dropped)
    "first_token_s": "float64",  # generate workloads: its batch's first token (NaN otherwise)
    "batch_id": "Int64",
    "batch_size": "Int64",
}
PROBE_COLUMNS: dict[str, str] = {
    "cell_id": "Int64",
    "probe": "Int64",
    "target_qps": "float64",
    "duration_s": "float64",
    "requests": "Int64",
    "achieved_qps": "float64",
    "latency_ms_p50": "float64",
    "latency_ms_p90": "float64",
    "latency_ms_p99": "float64",
    "queue_ms_p50": "float64",
    "queue_ms_p99": "float64",
    "mean_batch": "float64",
    "dropped": "Int64",
    "overloaded": "boolean",
    "slo_met": "boolean",
    "goodput_qps": "float64",
    "ttft_ms_p50": "float64",
    "ttft_ms_p99": "float64",
    "tpot_ms_p50": "float64",
    "tpot_ms_p99": "float64",
}
TIMESERIES_COLUMNS: dict[str, str] = {
    "cell_id": "Int64",
    "t_s": "float64",  # seconds since the soak's start
    "achieved_qps": "float64",  # completions in the last second
    "latency_ms_p50": "float64",  # over the last WINDOW_S seconds of completions
    "latency_ms_p99": "float64",
    "completed_total": "Int64",
    "dropped_total": "Int64",
    "host_rss_mb": "float64",
    "torch_device_mem_mb": "float64",  # torch.cuda.memory_allocated (NaN on CPU)
    "nvml_device_mem_mb": "float64",  # NVML's used memory of the device (NaN without NVML)
    "gpu_util_pct": "float64",
    "gpu_power_w": "float64",
    "sm_clock_mhz": "float64",
    "gpu_temp_c": "float64",
    "cpu_util_pct": "float64",  # the whole machine's busy share of all cores, over the last second
    "steal_pct": "float64",
}
SOAK_COLUMNS: dict[str, str] = {
    "cell_id": "Int64",
    "check": "string",  # throughput_drift | latency_drift | rss_growth | device_mem_growth | throttling
    "verdict": "string",  # none | detected | not_measured
    "estimate": "float64",  # the slope (per hour) or the clock drop the verdict rests on
    "ci_low": "float64",
    "ci_high": "float64",
    "unit": "string",
    "evidence": "string",
}
#: the extra tables a cell may carry (CellResult.tables), by file name
EXTRA_TABLES: dict[str, dict[str, str]] = {
    "requests.csv": REQUEST_COLUMNS,
    "probes.csv": PROBE_COLUMNS,
    "timeseries.csv": TIMESERIES_COLUMNS,
    "soak.csv": SOAK_COLUMNS,
}
#: the columns that say which cell a row is: `compare` joins two runs' rows on them
COMPARISON_KEY: tuple[str, ...] = (
    "model",
    "size",
    "pipeline",
    "runtime",
    "device_name",
    "batch_size",
    "precision",
)
#: the key without what a cell that did not run lacks (runtime, precision): how `ok -> error` is paired
LOOSE_COMPARISON_KEY: tuple[str, ...] = ("model", "size", "pipeline", "device_name", "batch_size")


def cells_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with every schema column, in schema order, with schema dtypes."""
    rows = list(rows)
    for row in rows:
        unknown = set(row) - set(CELL_COLUMNS)
        if unknown:
            raise KeyError(f"columns not in the schema: {sorted(unknown)}")
        if row.get("status") not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {row.get('status')!r}")
    frame = pd.DataFrame(rows, columns=list(CELL_COLUMNS))
    return apply_schema(frame, CELL_COLUMNS)


def apply_schema(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    frame = frame[list(columns)].copy()
    for col, dtype in columns.items():
        if dtype == "float64":
            frame[col] = pd.to_numeric(frame[col], errors="raise").astype("float64")
        else:
            frame[col] = frame[col].astype(dtype)
    return frame

"""The report's content: every run's cells in one frame, and the tables of the side-by-side page.

The "CPU vs GPU vs TensorRT" report: for each model, the throughput of every
pipeline on every device and its speedup over fp32 eager *on the same device*
(a speedup across devices mixes two questions), latency, memory, fidelity and
energy per cell, then the environment of each run and every cell that did not
run, with its reason.

Tables are built once here as formatted strings (``Table``) and rendered to
both HTML (bench.render.html) and Markdown (bench.render.markdown), so the two
formats always hold the same numbers. Plots are drawn from each section's cells
by bench.render.plots; nothing here imports matplotlib.

PSNR is inf for bit-identical output: in tables it reads "exact".

A model's workload (the ``workload`` column) decides its section. A ``forward``
model gets the tables above. A ``generate`` model (a whole greedy text
generation) gets one table of output tokens/s, its speedup, TTFT, TPOT, ITL p99,
decode bandwidth, KV-cache size and token match; a ``sample`` model (a whole
latent-diffusion run) one of s/image, images/s, its speedup, it/s and the split
into UNet, VAE and sampler, with PSNR. Speedups are always over fp32 eager on the
same device, on the workload's own speed: items/s, output tokens/s, s/image
(``SPEED_COLUMN``). The console (bench.render.console) writes the same columns
from the same ``Metric`` definitions.

A cell's status reads "ok (noisy)" when its spread exceeds 10% of its median and
"ok (contended)" when other processes shared its CPU or GPU while it was timed
(``contended``, bench.measure.contention): its latency is partly the neighbour's.
The report says how many cells were contended. Cells that did not run (``error``,
``oom``, ``crashed``, ``timeout``, ``skipped``) are listed with their reasons.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.core.errors import RunError
from bench.core.numbers import MISSING, as_float, fixed, num, percent, psnr
from bench.results.schema import DEFAULT_WORKLOAD
from bench.results.store import Run

FP32_EAGER = "fp32"
#: statuses of cells that were meant to run and did not: shown alike (bench.render.html styles them)
FAILED_STATUSES = ("error", "oom", "crashed", "timeout")
#: the column a workload's speedup is a ratio of, and whether more of it is faster: a sampling run's
#: speed is its seconds per image, so its speedup is fp32's s/image over the pipeline's
SPEED_COLUMN: dict[str, tuple[str, bool]] = {
    "forward": ("throughput_items_s", True),
    "generate": ("output_tokens_s", True),
    "sample": ("s_per_image", False),
}


@dataclass
class Table:
    """A titled table of already formatted strings; ``align`` holds 'l' or 'r' per column."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    align: list[str] = field(default_factory=list)
    css_class: str = ""

    def __post_init__(self) -> None:
        if not self.align:
            self.align = ["l"] * len(self.headers)


@dataclass
class Section:
    """A model's part of the report: its tables, its cells (for plots), and figures as (caption, PNG)."""

    title: str
    anchor: str
    cells: pd.DataFrame
    item: str
    workload: str = DEFAULT_WORKLOAD
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, bytes]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ data
def combine(runs: list[Run]) -> pd.DataFrame:
    """All cells of all runs in one frame, with ``device_label``, ``peak_mb`` and ``speedup``."""
    frames = [run.cells for run in runs if not run.cells.empty]
    if not frames:
        raise RunError("no cells in " + ", ".join(str(r.path) for r in runs))
    cells = pd.concat(frames, ignore_index=True)
    cells["device_label"] = device_labels(cells)
    peak = cells["peak_device_mem_mb"].astype("float64")
    cells["peak_mb"] = peak.where(peak.notna(), cells["peak_host_rss_mb"].astype("float64"))
    cells["speedup"] = speedups(cells)
    return cells


def device_labels(cells: pd.DataFrame) -> pd.Series:
    """A readable name per device: its device_name, plus host, device and run only where needed to tell apart."""
    labels = cells["device_name"].fillna(cells["device"]).fillna("unknown").astype(str)
    for extra, fmt in (("host", "{} @ {}"), ("device", "{} ({})"), ("run_id", "{} [{}]")):
        values = cells[extra].fillna("?").astype(str)
        ambiguous = values.groupby(labels).transform("nunique") > 1
        labels = labels.where(
            ~ambiguous, [fmt.format(lab, val) for lab, val in zip(labels, values, strict=True)]
        )
    return labels


def workloads(cells: pd.DataFrame) -> pd.Series:
    """Each row's workload; a row without one (written before schema 5, or built by hand) timed a forward call."""
    if "workload" not in cells.columns:
        return pd.Series(DEFAULT_WORKLOAD, index=cells.index, dtype="string")
    return cells["workload"].astype("string").fillna(DEFAULT_WORKLOAD)


def workload_of(cells: pd.DataFrame) -> str:
    """The workload of one model's cells (a model has one: its spec's)."""
    return str(workloads(cells).iloc[0]) if len(cells) else DEFAULT_WORKLOAD


def speeds(cells: pd.DataFrame) -> pd.Series:
    """What each row's speedup is a ratio of: its workload's speed column, inverted where less is faster."""
    kinds = workloads(cells)
    out = pd.Series(math.nan, index=cells.index, dtype="float64")
    for kind in kinds.unique():
        column, more_is_faster = SPEED_COLUMN.get(str(kind), SPEED_COLUMN[DEFAULT_WORKLOAD])
        rows = kinds == kind
        values = cells.loc[rows, column].astype("float64")
        out[rows] = values if more_is_faster else 1.0 / values  # pandas: 1 / 0 is inf, no warning
    return out


def speedups(cells: pd.DataFrame) -> pd.Series:
    """Speed over fp32 eager's on the same device label, model, size and batch; NaN without one.

    Speed is the workload's (``SPEED_COLUMN``): items/s of a forward call, output tokens/s of a
    generation, the inverse of s/image of a sampling run.
    """
    group = ["device_label", "model", "size", "batch_size"]
    ok = cells["status"] == "ok"
    speed = speeds(cells)
    base = (
        cells[group]
        .assign(speed=speed)[ok & (cells["pipeline"] == FP32_EAGER)]
        .drop_duplicates(group)
        .set_index(group)["speed"]
    )
    keys = pd.MultiIndex.from_frame(cells[group])
    reference = pd.Series(base.reindex(keys).to_numpy(dtype=float), index=cells.index)
    return (speed / reference).where(ok)


def ordered(values: Iterable[Any]) -> list[Any]:
    """Unique values in first-seen order (the run's own order of pipelines and devices)."""
    return list(dict.fromkeys(values))


# ------------------------------------------------------------------ tables
def environment_table(runs: list[Run]) -> Table:
    table = Table(
        "Environment of each run",
        ["run", "host", "device", "CPU", "GPUs", "torch", "python", "git sha", "captured at"],
    )
    for run in runs:
        sources = run.sources or [{}]
        for env in sources:
            cpu = env.get("cpu") if isinstance(env.get("cpu"), dict) else {}
            cpu_text = str(cpu.get("model", "-"))
            if cpu.get("logical_cores"):
                cpu_text += (
                    f" ({cpu.get('logical_cores')} cores, {cpu.get('torch_threads', '?')} torch threads)"
                )
            gpus = env.get("gpus") if isinstance(env.get("gpus"), list) else []
            gpu_text = ", ".join(str(g.get("name", "?")) for g in gpus if isinstance(g, dict)) or "none"
            packages = env.get("packages") if isinstance(env.get("packages"), dict) else {}
            table.rows.append(
                [
                    str(env.get("run_id") or run.name),
                    str(env.get("hostname", "-")),
                    str(env.get("device", "-")),
                    cpu_text,
                    gpu_text,
                    str(packages.get("torch", "-")),
                    str(env.get("python", "-")),
                    str(env.get("git_sha", "-"))[:12],
                    str(env.get("captured_at", "-")),
                ]
            )
        if not run.sources:
            table.rows[-1][1] = f"(no env.json in {run.path})"
    return table


def throughput_table(model_cells: pd.DataFrame, item: str) -> Table:
    """Pipelines x batch sizes as rows, devices side by side as column pairs (items/s, x fp32)."""
    devices = ordered(model_cells["device_label"])
    headers = ["pipeline", "batch"]
    for device in devices:
        headers += [f"{device} {item}/s", f"{device} x fp32"]
    table = Table("Throughput and speedup over fp32 eager on the same device", headers, css_class="wide")
    table.align = ["l", "r"] + ["r"] * (2 * len(devices))
    indexed = model_cells.set_index(["pipeline", "batch_size", "device_label"])
    for batch in sorted(ordered(model_cells["batch_size"])):
        for pipeline in ordered(model_cells["pipeline"]):
            row = [pipeline, str(batch)]
            present = False
            for device in devices:
                key = (pipeline, batch, device)
                if key in indexed.index:
                    cell = indexed.loc[[key]].iloc[0]
                    present = True
                    if cell["status"] == "ok":
                        row += [fixed(cell["throughput_items_s"], 1), fixed(cell["speedup"], 2, "x")]
                    else:
                        row += [str(cell["status"]), ""]
                else:
                    row += ["", ""]
            if present:
                table.rows.append(row)
    return table


def details_table(model_cells: pd.DataFrame) -> Table:
    table = Table(
        "Latency, memory, fidelity and energy per cell",
        [
            "device",
            "pipeline",
            "batch",
            "runtime",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "peak MB",
            "PSNR dB",
            "J/item",
            "status",
        ],
        align=["l", "l", "r", "l", "r", "r", "r", "r", "r", "r", "l"],
    )
    for row in model_cells.sort_values(["device_label", "batch_size"], kind="stable").itertuples(index=False):
        status = str(row.status)
        flags = [name for name in ("noisy", "contended") if _flagged(getattr(row, name))]
        if status == "ok" and flags:
            status = f"ok ({', '.join(flags)})"
        table.rows.append(
            [
                str(row.device_label), str(row.pipeline), str(row.batch_size),
                "-" if pd.isna(row.runtime) else str(row.runtime),
                num(row.latency_ms_p50), num(row.latency_ms_p90), num(row.latency_ms_p99),
                fixed(row.peak_mb, 0), psnr(row.psnr_db), num(row.energy_j_per_item), status,
            ]
        )  # fmt: skip
    return table


@dataclass(frozen=True)
class Metric:
    """One column of a generate or sample table: its header and how a row's value is written.

    ``drop`` is the console's order of leaving it out at a narrow width (0: never; the
    highest goes first, as bench.render.tables.Column). Rows are itertuples of a cells
    frame that holds ``speedup``.
    """

    header: str
    text: Callable[[Any], str]
    drop: int = 0


def share(value: Any) -> str:
    """A share in 0..1 as a percent with one decimal ("98.4%"), "-" when missing."""
    number = as_float(value)
    return MISSING if number is None else percent(100.0 * number, 1, signed=False)


def _speedup(row: Any) -> str:
    return fixed(row.speedup, 2, "x")


#: the columns of a generate model's table, after pipeline and batch (bench.measure.generation defines them)
GENERATE_METRICS: tuple[Metric, ...] = (
    Metric("output tokens/s", lambda r: fixed(r.output_tokens_s, 1)),
    Metric("speedup", _speedup, drop=1),
    Metric("TTFT ms", lambda r: fixed(r.ttft_ms, 2)),
    Metric("TPOT ms", lambda r: fixed(r.tpot_ms, 2)),
    Metric("ITL p99 ms", lambda r: fixed(r.itl_ms_p99, 2), drop=2),
    Metric("decode GB/s", lambda r: num(r.decode_gb_s), drop=3),
    Metric("% of copy BW", lambda r: percent(r.pct_of_bandwidth, 1, signed=False), drop=4),
    Metric("KV cache MB", lambda r: num(r.kv_cache_mb), drop=5),
    Metric("token match", lambda r: share(r.token_match)),
)
#: the columns of a sample model's table, after pipeline and batch (bench.measure.diffusion defines them)
SAMPLE_METRICS: tuple[Metric, ...] = (
    Metric("s/image", lambda r: fixed(r.s_per_image, 3)),
    Metric("images/s", lambda r: fixed(r.images_s, 2)),
    Metric("speedup", _speedup, drop=1),
    Metric("it/s", lambda r: fixed(r.it_s, 1), drop=5),
    Metric("UNet ms/step", lambda r: fixed(r.unet_step_ms, 2), drop=2),
    Metric("VAE ms", lambda r: fixed(r.vae_decode_ms, 2), drop=3),
    Metric("sampler overhead ms", lambda r: fixed(r.sampler_overhead_ms, 2), drop=4),
    Metric("PSNR dB", lambda r: psnr(r.psnr_db)),
)
WORKLOAD_METRICS: dict[str, tuple[Metric, ...]] = {"generate": GENERATE_METRICS, "sample": SAMPLE_METRICS}
#: what the report says under a workload's table: how to read its columns
WORKLOAD_NOTES: dict[str, str] = {
    "generate": (
        "TTFT includes the prefill; TPOT is per sequence, after the first token; % of copy BW is decode GB/s "
        "over the device's measured copy bandwidth; token match is teacher-forced against fp32."
    ),
    "sample": (
        "s/image is a whole run (UNet steps, VAE decode, sampler) over the batch; it/s is steps per second "
        "of a run; UNet ms/step is one UNet call, on the doubled batch when guidance is on."
    ),
}
#: what a cell whose ``fidelity_ok`` is False is flagged with: a generate cell's gate is its token match
LOW_FIDELITY: dict[str, str] = {"generate": "low token match"}


def low_fidelity(workload: str) -> str:
    return LOW_FIDELITY.get(workload, "low PSNR")


def settings_text(cells: pd.DataFrame, workload: str) -> str:
    """What each timed call of these cells was ("prompt 32 + 32 new tokens, static KV cache"), "" if unsaid.

    Distinct settings (runs made with other flags) are joined with " / ".
    """
    texts: list[str] = []
    for row in cells.itertuples(index=False):
        if workload == "generate" and pd.notna(row.prompt_len) and pd.notna(row.new_tokens):
            cache = f", {row.kv_cache} KV cache" if pd.notna(row.kv_cache) else ""
            texts.append(f"prompt {int(row.prompt_len)} + {int(row.new_tokens)} new tokens{cache}")
        elif workload == "sample" and pd.notna(row.steps):
            sampler = f" {row.sampler}" if pd.notna(row.sampler) else ""
            guidance = f", guidance {float(row.guidance):g}" if pd.notna(row.guidance) else ""
            texts.append(f"{int(row.steps)}{sampler} steps{guidance}")
    return " / ".join(ordered(texts))


def sampling_split(row: Any) -> tuple[float, float, float] | None:
    """Seconds per image in the UNet steps, the VAE decode and the sampler, summing to ``s_per_image``.

    Each part is a median over the cell's runs, so their sum is close to the median run but
    not equal to it; the parts are scaled to sum to ``s_per_image`` so a stacked bar is as
    tall as the cell's s/image. None when a part is missing.
    """
    steps, total = as_float(row.steps), as_float(row.s_per_image)
    parts = [as_float(row.unet_step_ms), as_float(row.vae_decode_ms), as_float(row.sampler_overhead_ms)]
    if steps is None or total is None or any(p is None for p in parts):
        return None
    unet, vae, sampler = (max(p, 0.0) for p in parts if p is not None)  # a median overhead is never < 0
    ms = [unet * steps, vae, sampler]
    whole = sum(ms)
    if whole <= 0:
        return None
    split = [total * part / whole for part in ms]
    return split[0], split[1], split[2]


def _status_text(row: Any, workload: str) -> str:
    """The status as the details table writes it, with low fidelity flagged too."""
    status = str(row.status)
    flags = [name for name in ("noisy", "contended") if _flagged(getattr(row, name))]
    if status == "ok" and not pd.isna(row.fidelity_ok) and not bool(row.fidelity_ok):
        flags.append(low_fidelity(workload))
    return f"ok ({', '.join(flags)})" if status == "ok" and flags else status


def workload_table(model_cells: pd.DataFrame, workload: str) -> Table:
    """A generate or sample model's cells: device, pipeline, batch, the workload's metrics, status."""
    metrics = WORKLOAD_METRICS[workload]
    title = {
        "generate": "Generation per cell (speedup: output tokens/s over fp32 eager's on the same device)",
        "sample": "Sampling per cell (speedup: fp32 eager's s/image over the pipeline's, on the same device)",
    }[workload]
    table = Table(
        title,
        ["device", "pipeline", "batch", *(m.header for m in metrics), "status"],
        align=["l", "l", "r", *["r"] * len(metrics), "l"],
        css_class="wide",
    )
    for row in model_cells.sort_values(["device_label", "batch_size"], kind="stable").itertuples(index=False):
        values = [m.text(row) for m in metrics] if row.status == "ok" else [""] * len(metrics)
        table.rows.append(
            [
                str(row.device_label),
                str(row.pipeline),
                str(row.batch_size),
                *values,
                _status_text(row, workload),
            ]
        )
    return table


def _flagged(value: Any) -> bool:
    """True only for a measured True: an older run's empty ``contended`` is not a flag."""
    return not pd.isna(value) and bool(value)


def contended_count(cells: pd.DataFrame) -> int:
    """How many cells shared their CPU or GPU with other processes while timed."""
    if "contended" not in cells.columns:
        return 0
    return int(sum(_flagged(v) for v in cells["contended"]))


def failures_table(cells: pd.DataFrame) -> Table:
    table = Table(
        "Cells that did not run",
        ["model", "size", "device", "pipeline", "batch", "status", "reason"],
        align=["l", "l", "l", "l", "r", "l", "l"],
        css_class="failures",
    )
    bad = cells[cells["status"] != "ok"]
    for row in bad.itertuples(index=False):
        table.rows.append(
            [
                str(row.model), str(row.size), str(row.device_label), str(row.pipeline), str(row.batch_size),
                str(row.status), "" if pd.isna(row.reason) else str(row.reason),
            ]
        )  # fmt: skip
    return table


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both PSNR (x) and throughput (y), sorted by x descending."""
    front: list[tuple[float, float]] = []
    best_y = -math.inf
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if y > best_y:
            front.append((x, y))
            best_y = y
    return front


# ------------------------------------------------------------------ assembly
def model_sections(cells: pd.DataFrame) -> list[Section]:
    """One section per (model, size), in the order the runs hold them."""
    sections: list[Section] = []
    for (model, size), group in cells.groupby(["model", "size"], sort=False):
        item = str(group["item"].dropna().iloc[0]) if group["item"].notna().any() else "item"
        anchor = _anchor(f"model-{model}-{size}")
        taken = {s.anchor for s in sections}
        if anchor in taken:  # two names that differ only in characters an id cannot hold
            anchor = next(f"{anchor}-{i}" for i in range(2, len(taken) + 3) if f"{anchor}-{i}" not in taken)
        workload = workload_of(group)
        section = Section(title=f"{model} ({size})", anchor=anchor, cells=group, item=item, workload=workload)
        if workload in WORKLOAD_METRICS:
            section.tables.append(workload_table(group, workload))
            settings = settings_text(group[group["status"] == "ok"], workload)
            if settings:
                section.notes.append(f"each timed call: {settings}. {WORKLOAD_NOTES[workload]}")
        else:
            section.tables += [throughput_table(group, item), details_table(group)]
        if workload == "generate":
            section.notes.append(
                "energy per token of prefill and of decode is measured where the device reports power (NVML): "
                "cells.csv's energy_j_per_token_prefill and energy_j_per_token_decode."
                if group["energy_j_per_token_decode"].notna().any()
                else "energy per token: not measured on these devices (needs NVML power readings)."
            )
        elif group["energy_j_per_item"].notna().any():
            section.notes.append("energy per item is measured where the device reports power (NVML).")
        else:
            section.notes.append(
                "energy per item: not measured on these devices (needs NVML power readings)."
            )
        sections.append(section)
    return sections


def _anchor(text: str) -> str:
    """An HTML id from a model name a run folder supplies: letters, digits, '-' and '_' only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "model"


@dataclass
class Report:
    runs: list[Run]
    cells: pd.DataFrame
    environment: Table
    sections: list[Section]
    failures: Table

    @property
    def title(self) -> str:
        devices = ordered(self.cells["device_label"])
        return "genbench report: " + " vs ".join(devices)

    @property
    def contended(self) -> int:
        return contended_count(self.cells)

    def contended_note(self) -> str:
        """One sentence on the contended cells, or "" when there are none."""
        if not self.contended:
            return ""
        return (
            f"{self.contended} of {len(self.cells)} cells were contended: other processes shared the CPU or GPU "
            "while they were timed, so their latencies are partly the neighbours' (status 'ok (contended)')."
        )


def build_report(runs: list[Run]) -> Report:
    """The tables of every section; ``bench.render.plots.add_figures`` draws the plots."""
    cells = combine(runs)
    return Report(runs, cells, environment_table(runs), model_sections(cells), failures_table(cells))

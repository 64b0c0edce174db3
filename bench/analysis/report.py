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

A cell's status reads "ok (noisy)" when its spread exceeds 10% of its median and
"ok (contended)" when other processes shared its CPU or GPU while it was timed
(``contended``, bench.measure.contention): its latency is partly the neighbour's.
The report says how many cells were contended. Cells that did not run (``error``,
``oom``, ``crashed``, ``timeout``, ``skipped``) are listed with their reasons.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.core.errors import RunError
from bench.core.numbers import fixed, num, psnr
from bench.results.store import Run

FP32_EAGER = "fp32"
#: statuses of cells that were meant to run and did not: shown alike (bench.render.html styles them)
FAILED_STATUSES = ("error", "oom", "crashed", "timeout")


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


def speedups(cells: pd.DataFrame) -> pd.Series:
    """Throughput over fp32 eager's on the same device label, model, size and batch; NaN without one."""
    group = ["device_label", "model", "size", "batch_size"]
    ok = cells["status"] == "ok"
    base = (
        cells[ok & (cells["pipeline"] == FP32_EAGER)]
        .drop_duplicates(group)
        .set_index(group)["throughput_items_s"]
    )
    keys = pd.MultiIndex.from_frame(cells[group])
    reference = base.reindex(keys).to_numpy(dtype=float)
    return pd.Series(cells["throughput_items_s"].to_numpy(dtype=float) / reference, index=cells.index).where(
        ok
    )


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
        section = Section(title=f"{model} ({size})", anchor=anchor, cells=group, item=item)
        section.tables += [throughput_table(group, item), details_table(group)]
        if group["energy_j_per_item"].notna().any():
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

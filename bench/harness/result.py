"""A cell's result as typed parts, each knowing its own columns of the cells table.

``CellResult.row()`` is the only place a row is assembled: each part contributes
``columns()``, a part that was not measured (a skipped cell has no latency) gives
its columns empty. Together the parts' ``COLUMNS`` are exactly the schema's
(``bench.results.schema.CELL_COLUMNS``; a test holds them equal), so a new metric
is a new part, not a new key typed by hand in the loop. A result is plain data, so
a cell measured in another process or on another machine comes back as one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from bench.core.columns import RowPart
from bench.core.precision import peak_key
from bench.core.statuses import STATUSES
from bench.hardware.peak import PeakResult
from bench.measure.contention import HostContention
from bench.measure.diffusion import SamplingMetrics
from bench.measure.energy import EnergyWindow
from bench.measure.fidelity import Fidelity
from bench.measure.generation import GenerationMetrics, TokenFidelity
from bench.measure.gpu_watch import GpuObservation
from bench.measure.memory import Footprint
from bench.measure.stats import LatencyStats
from bench.measure.transfers import Transfers
from bench.measure.work import WorkPerItem
from bench.serving.stats import ServingMetrics


@dataclass(frozen=True)
class CellIdentity(RowPart):
    """Where a row comes from: the run, the machine, and the cell's coordinates."""

    run_id: str
    cell_id: int
    started_at: str
    host: str
    device: str
    device_name: str
    hw_id: str
    model: str
    size: str
    family: str
    pipeline: str
    batch_size: int
    item: str
    workload: str  # forward | generate | sample (reference_models.spec.WORKLOADS)
    scenario: str  # single-stream | offline | server (bench.harness.config.SCENARIOS)
    target_qps: float  # server: the offered Poisson rate (NaN: not a server cell, or a --find-peak search)
    threads: int  # intra-op threads the cell ran with (torch.get_num_threads in the process that ran it)
    isolation: str  # process | none
    repeat: int  # which pass over the matrix (run --repeats), from 0
    torch_version: str
    git_sha: str

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "run_id", "cell_id", "started_at", "host", "device", "device_name", "hw_id", "model", "size", "family",
        "pipeline", "batch_size", "item", "workload", "scenario", "target_qps", "threads", "isolation", "repeat", "torch_version", "git_sha",
    )  # fmt: skip


@dataclass(frozen=True)
class CellOutcome(RowPart):
    """How the cell ended (``STATUSES``), why, and what the passes and the sampler noted."""

    status: str
    reason: str | None = None
    notes: str | None = None

    COLUMNS: ClassVar[tuple[str, ...]] = ("status", "reason", "notes")

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


@dataclass(frozen=True)
class BuildResult(RowPart):
    """What the pipeline built and what it cost: the runtime, its precision, build and first-call time, size."""

    runtime: str
    precision: str
    build_s: float
    first_call_ms: float
    params: int
    model_bytes: int | None  # None: a third-party artifact that does not say its stored size

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "runtime", "precision", "build_s", "first_call_ms", "params", "model_bytes",
    )  # fmt: skip


@dataclass(frozen=True)
class Throughput(RowPart):
    """Items per second at the median latency, the FLOP rate that implies, and its share of the measured peak."""

    throughput_items_s: float
    achieved_gflops: float
    pct_of_peak: float

    COLUMNS: ClassVar[tuple[str, ...]] = ("throughput_items_s", "achieved_gflops", "pct_of_peak")

    @classmethod
    def of(
        cls, batch: int, p50_ms: float, gflops_per_item: float, precision: str, peak: PeakResult | None
    ) -> Throughput:
        items_s = batch / (p50_ms / 1e3)
        achieved = gflops_per_item * items_s
        return cls(items_s, achieved, pct_of_peak(peak, precision, achieved * 1e9))

    @staticmethod
    def peak_dtype(precision: str, peak: PeakResult | None) -> str | None:
        """The measured rate ``pct_of_peak`` divides by for ``precision`` (None without a peak)."""
        return peak_key(precision, has_tf32="tf32" in peak.flops) if peak is not None else None


def pct_of_peak(peak: PeakResult | None, precision: str, achieved_flops_s: float) -> float:
    """The achieved rate as a % of the measured GEMM peak that bounds ``precision`` (NaN without one)."""
    if peak is None:
        return math.nan
    key = peak_key(precision, has_tf32="tf32" in peak.flops)
    rate = peak.flops.get(key) if key is not None else None
    return 100.0 * achieved_flops_s / rate if rate else math.nan


_SAMPLE_FIELDS = ("samples_ms", "phase_samples", "tables")
#: the parts of a row, in the order their columns are filled
PARTS: tuple[type, ...] = (
    CellIdentity, CellOutcome, BuildResult, LatencyStats, HostContention, Throughput, Transfers, Footprint,
    WorkPerItem, Fidelity, GpuObservation, EnergyWindow, GenerationMetrics, TokenFidelity, SamplingMetrics,
    ServingMetrics,
)  # fmt: skip
#: a cell's extra tables (bench.results.schema.EXTRA_TABLES): file name -> rows (dicts of that table's columns)
Tables = dict[str, tuple[dict[str, Any], ...]]
#: a phase of a cell's raw samples (samples.csv): (phase, iter, step, ms)
PhaseSample = tuple[str, int, int, float]


@dataclass(frozen=True)
class CellResult:
    """One cell: its identity and outcome always; the measured parts when it ran; its raw latency samples."""

    identity: CellIdentity
    outcome: CellOutcome
    build: BuildResult | None = None
    latency: LatencyStats | None = None
    contention: HostContention | None = None
    throughput: Throughput | None = None
    transfers: Transfers | None = None
    footprint: Footprint | None = None
    work: WorkPerItem | None = None
    fidelity: Fidelity | None = None
    gpu: GpuObservation | None = None
    energy: EnergyWindow | None = None
    generation: GenerationMetrics | None = None
    tokens: TokenFidelity | None = None
    sampling: SamplingMetrics | None = None
    serving: ServingMetrics | None = None
    #: one per timed call of the workload (a forward call, a whole generation, a whole sampling run)
    samples_ms: tuple[float, ...] = field(default=(), repr=False)
    #: the steps inside those calls: a generation's prefill and decode steps, a sampling run's UNet calls
    #: and VAE decode (empty for a forward cell)
    phase_samples: tuple[PhaseSample, ...] = field(default=(), repr=False)
    #: a serving cell's requests, probes, time series and soak checks (empty for other cells)
    tables: Tables = field(default_factory=dict, repr=False)

    def parts(self) -> tuple[Any, ...]:
        """The row parts, in field order (which is PARTS's order: a test holds them aligned)."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.name not in _SAMPLE_FIELDS)

    @property
    def status(self) -> str:
        return self.outcome.status

    def row(self) -> dict[str, Any]:
        """The cells-table row: every schema column, empty where a part was not measured."""
        row: dict[str, Any] = {}
        for cls, part in zip(PARTS, self.parts(), strict=True):
            row.update(part.columns() if part is not None else dict.fromkeys(cls.COLUMNS))
        return row

"""A row is its typed parts' columns: together they are exactly the schema, and the README documents them."""

from __future__ import annotations

import math
import re
from pathlib import Path

from bench.harness.result import (
    PARTS,
    BuildResult,
    CellIdentity,
    CellOutcome,
    CellResult,
    Throughput,
)
from bench.measure.contention import HostContention
from bench.measure.diffusion import SamplingMetrics
from bench.measure.energy import EnergyReading, EnergyWindow
from bench.measure.fidelity import Fidelity
from bench.measure.generation import GenerationMetrics, TokenFidelity
from bench.measure.gpu_watch import GpuObservation
from bench.measure.memory import Footprint
from bench.measure.nvml import GpuState
from bench.measure.stats import summarize
from bench.measure.transfers import Transfers
from bench.measure.work import WorkPerItem
from bench.results.schema import CELL_COLUMNS, cells_frame
from bench.serving.stats import ServingMetrics

README = Path(__file__).resolve().parents[3] / "README.md"


def _identity() -> CellIdentity:
    return CellIdentity(
        "run", 0, "2026-12-02T00:00:00+00:00", "host", "cpu", "CPU", "0123456789ab", "dcgan", "tiny", "gan",
        "fp32", 2, "image", "forward", "single-stream", math.nan, 2, "none", 0, "2.13.0", "abc",
    )  # fmt: skip


def _full_result() -> CellResult:
    state = GpuState(sm_clock_mhz=1980.0, temperature_c=40.0)
    return CellResult(
        identity=_identity(),
        outcome=CellOutcome("ok", notes="stop=converged"),
        build=BuildResult("torch-eager", "fp32", 0.1, 2.0, 1000, 4000),
        latency=summarize([1.0, 1.1, 0.9, 1.0]),
        contention=HostContention(5.0, False, 0.0, 0.3, None, 0.1),
        throughput=Throughput(2000.0, 4.0, math.nan),
        transfers=Transfers(),
        footprint=Footprint(100.0),
        work=WorkPerItem(0.002, 1.5, 0.5, 0.2, 0.0),
        fidelity=Fidelity(math.inf, 0.0, 1.0),
        gpu=GpuObservation(math.nan, state, state),
        energy=EnergyWindow(EnergyReading(10.0, 1.0, 50), calls=100, items_per_call=2),
        # a real cell has at most one workload's part; every part here, so every column is checked
        generation=GenerationMetrics(
            32, 32, "static", 5.0, 1.0, 1.0, 1.2, 36.0, 1777.0, 1000.0, 12800.0, 0.5, 20.0, 50.0
        ),
        tokens=TokenFidelity(1.0, 0.0, 32.0),
        sampling=SamplingMetrics(10, 7.5, "ddim", 0.5, 2.0, 20.0, 40.0, 90.0, 10.0),
        serving=ServingMetrics(
            9.5, 1.0, 5.0, 2.5, 0, False, 100.0, True, 9.5, 10.0, 6, 30.0, 0.0, 8, 600.0, "rss_growth: none"
        ),
        samples_ms=(1.0, 1.1, 0.9, 1.0),
    )


def test_the_parts_columns_are_exactly_the_schemas() -> None:
    columns = [c for part in PARTS for c in part.COLUMNS]
    assert len(columns) == len(set(columns)), "a column is filled by two parts"
    assert set(columns) == set(CELL_COLUMNS)


def test_each_part_gives_exactly_its_declared_columns() -> None:
    result = _full_result()
    for cls, part in zip(PARTS, result.parts(), strict=True):
        assert isinstance(part, cls)
        assert tuple(part.columns()) == cls.COLUMNS


def test_a_full_row_and_a_skipped_row_fit_the_schema() -> None:
    full = _full_result().row()
    assert set(full) == set(CELL_COLUMNS)
    assert full["energy_j_per_item"] == 10.0 / 200 and full["fidelity_ok"] is True
    skipped = CellResult(_identity(), CellOutcome("skipped", "no GPU")).row()
    assert set(skipped) == set(CELL_COLUMNS)
    assert skipped["latency_ms_p50"] is None and skipped["reason"] == "no GPU"
    frame = cells_frame([full, skipped])
    assert list(frame["status"]) == ["ok", "skipped"]


def test_throughput_and_pct_of_peak_from_the_median() -> None:
    from bench.hardware.peak import PeakResult

    peak = PeakResult("cpu", "CPU", "cpu", "now", "2.13", 2, 1, {"fp32": 100e9, "bf16": 1e9}, {}, 1e10)
    tp = Throughput.of(batch=4, p50_ms=2.0, gflops_per_item=0.5, precision="fp32", peak=peak)
    assert tp.throughput_items_s == 2000.0 and tp.achieved_gflops == 1000.0
    assert tp.pct_of_peak == 1000.0  # 1 TFLOP/s on a 100 GFLOP/s peak: an impossible figure shows as such
    assert Throughput.of(4, 2.0, 0.5, "bf16", peak).pct_of_peak == 100_000.0
    assert math.isnan(Throughput.of(4, 2.0, 0.5, "fp32", None).pct_of_peak)


def test_the_readme_column_table_lists_exactly_the_schemas_columns() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Reading the table", 1)[1].split("\n## ", 1)[0]
    documented: list[str] = []
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            documented += re.findall(r"`([a-z0-9_]+)`", first_cell)
    assert len(documented) == len(set(documented)), "a column is documented twice"
    assert set(documented) == set(CELL_COLUMNS), (
        f"undocumented: {sorted(set(CELL_COLUMNS) - set(documented))}; "
        f"not in the schema: {sorted(set(documented) - set(CELL_COLUMNS))}"
    )

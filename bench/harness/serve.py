"""A serving cell: the pipeline built once, then served under a Poisson load (or a soak) instead of timed call by call.

What it measures, in order:
1. build and load, as a forward cell does (``apply_pipeline``, the runtime's first call);
   fidelity on the reference batch, so a server row says what its pipeline costs in quality;
2. prime: every power-of-two batch size up to ``--max-batch`` (and the largest) is run and
   timed once warm, so no request pays for a first call of its shape and the peak search
   starts from the capacity those calls imply;
3. serve: the load generator and the dynamically batching serving thread
   (``bench.serving``), one load at the cell's ``--target-qps``, the probes of a
   ``--find-peak`` search, or a ``--soak`` with its once-a-second time series.
   Each batch places its inputs on the device and fetches its outputs, as a server must
   before it answers.

The row's latency columns are its requests' latencies from scheduled arrival (of the peak
probe for a search), its throughput the achieved rate; every request goes to
``requests.csv`` and every load to ``probes.csv``. Host contention and the GPU's clocks are
observed over the loads, not over the build.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.core.errors import NotApplicable
from bench.harness.cell import CellSettings, Instruments, build_forward
from bench.harness.config import ServingSettings, WorkloadSettings
from bench.harness.plan import Cell
from bench.harness.reference import References
from bench.harness.result import BuildResult, CellIdentity, CellOutcome, CellResult, Tables, Throughput
from bench.harness.soak import Watched
from bench.measure.clocks import HostTimer
from bench.measure.contention import ContentionMeter, gpu_process_reader
from bench.measure.fidelity import Fidelity, compare_outputs
from bench.measure.generation import GenerationMetrics
from bench.measure.gpu_watch import GpuWatch
from bench.measure.memory import Footprint, PeakRSS
from bench.measure.stats import LatencyStats
from bench.measure.work import WorkPerItem
from bench.runtimes import LoadedModel, runtime_notes
from bench.serving.load import LoadResult, LoadSpec, run_threaded_load
from bench.serving.peak import find_peak, probe_duration
from bench.serving.server import BatchingPolicy
from bench.serving.stats import ServingMetrics

#: timed calls per batch size when priming (their median is the size's service time)
PRIME_CALLS = 3
#: the most requests a cell sends back (~116 bytes each in the worker's reply, capped at 256 MiB)
MAX_KEPT_REQUESTS = 1_500_000
#: the peak search starts at this share of the capacity the priming calls imply (a load just below it)
START_SHARE = 0.7


def batch_slice(inputs: tuple[Any, ...], full: int, n: int) -> tuple[Any, ...]:
    """The first ``n`` items of a batch of ``full``: tensors whose first dimension is the batch are cut."""
    return tuple(
        t[:n] if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == full else t for t in inputs
    )


def prime_sizes(max_batch: int) -> list[int]:
    """The batch sizes primed before a load: powers of two up to ``max_batch``, and ``max_batch``."""
    sizes = {max_batch}
    n = 1
    while n < max_batch:
        sizes.add(n)
        n *= 2
    return sorted(sizes)


class BatchServer:
    """Serves batches of n items of one model: each places its inputs, runs, and fetches its outputs."""

    def __init__(self, runtime: LoadedModel, inputs: tuple[Any, ...], full: int, tools: Instruments) -> None:
        self.runtime = runtime
        self.inputs = inputs
        self.full = full
        self.tools = tools
        self._by_size: dict[int, tuple[Any, ...]] = {}

    def _inputs(self, n: int) -> tuple[Any, ...]:
        if n not in self._by_size:
            self._by_size[n] = batch_slice(self.inputs, self.full, n)
        return self._by_size[n]

    def __call__(self, n: int) -> float:
        runtime = self.runtime
        runtime.to_torch(runtime.run(runtime.prepare(self._inputs(n))))
        self.tools.synchronize()
        return math.nan  # a forward call has no first token

    def prime(self, sizes: list[int]) -> dict[int, float]:
        """Seconds of a warm call per batch size: the median of 3, after one call that pays its first-call cost
        (one timed call was seen 2.4x off on the 2-core Xeon, which misplaced the peak search's start)."""
        timer = HostTimer(synchronize=self.tools.synchronize)
        times = {}
        for n in sizes:
            self(n)
            times[n] = (
                float(np.median([timer.measure(lambda n=n: self(n)) for _ in range(PRIME_CALLS)])) / 1e3
            )
        return times


@dataclass(frozen=True)
class Built:
    """A serving cell's model, built and loaded: what serves a batch, and what the row says of the build."""

    serve: Any  # BatchServer | GenerateServer: call(n) serves n items, prime(sizes) times them warm
    runtime: str
    precision: str
    build_s: float
    first_call_ms: float
    params: int
    model_bytes: int | None
    work: WorkPerItem
    fidelity: Fidelity | None
    through_torch: bool
    notes: tuple[str, ...]
    new_tokens: int | None = None


def _build_forward(
    cell: Cell, references: References, tools: Instruments, settings: CellSettings, workdir: Path
) -> Built:
    """Build the pipeline as a forward cell does; fidelity on the reference batch (at --max-batch)."""
    ref = references.get(cell)
    built = build_forward(
        cell, ref, references, tools, tuple(sorted({1, cell.batch_size})), workdir, "server"
    )
    artifact, runtime = built.artifact, built.runtime
    first: list[Any] = []
    first_call_ms = HostTimer(synchronize=tools.synchronize).measure(
        lambda: first.append(runtime.to_torch(runtime.run(runtime.prepare(ref.inputs))))
    )
    fidelity = compare_outputs(ref.output, first.pop(), settings.min_psnr_db)
    return Built(
        BatchServer(runtime, ref.inputs, cell.batch_size, tools), runtime.runtime_name, artifact.precision,
        built.build_s, first_call_ms, built.params, built.model_bytes, built.work, fidelity,
        runtime.allocates_through_torch,
        (*artifact.notes, *runtime_notes(runtime), *([built.work_note] if built.work_note else [])),
    )  # fmt: skip


class GenerateServer:
    """Serves batches of n prompts of a causal LM: static batching per batch window, each batch a whole
    greedy generation of ``new_tokens`` (its requests' first token comes with the batch's prefill).

    The KV cache is set up for each batch's size (the same size again only resets it); compiled
    pipelines see a new shape per size, which priming compiles before the load.
    """

    def __init__(self, lm: Any, prompt: torch.Tensor, ws: WorkloadSettings, tools: Instruments) -> None:
        self.lm = lm
        self.prompt = prompt
        self.ws = ws
        self.tools = tools

    def __call__(self, n: int) -> float:
        from bench.harness.generate import generate
        from bench.measure.step_clock import step_clock_for

        ws = self.ws
        self.lm.setup_cache(n, ws.prompt_len + ws.new_tokens, ws.kv_cache)
        clock = step_clock_for(self.tools.device)
        t0 = time.perf_counter()
        generate(self.lm, self.prompt[:n], ws.new_tokens, clock)
        first_token_ms = clock.times_ms()[0]  # synchronizes: the generation is over
        return t0 + first_token_ms / 1e3

    prime = BatchServer.prime


def _build_generate(
    cell: Cell, references: References, tools: Instruments, settings: CellSettings, workdir: Path
) -> Built:
    """Build a causal LM's pipeline as a generate cell does (the cache set up before the passes)."""
    from bench.harness.generate import build_lm, check_lm, prompts

    ws = settings.workload
    if ws is None:
        raise ValueError("a generate cell needs the run's workload settings")
    device = tools.device
    base = references.base_module(cell)
    check_lm(base, cell.spec.name, ws.prompt_len, ws.new_tokens)
    prompt = prompts(int(base.vocab_size), cell.batch_size, ws.prompt_len, references.seed)
    built = build_lm(cell, base, prompt, references, tools, ws, tuple(sorted({1, cell.batch_size})), workdir)
    artifact, build_s, params = built.artifact, built.build_s, built.params
    server = GenerateServer(artifact.module, prompt.to(device.torch_name), ws, tools)
    first_call_ms = HostTimer(synchronize=tools.synchronize).measure(lambda: server(cell.batch_size))
    nan = math.nan
    return Built(
        server, "torch-compiled" if artifact.compiled else "torch-eager", artifact.precision, build_s,
        first_call_ms, params, artifact.stored_bytes(), WorkPerItem(2.0 * params / 1e9, nan, nan, nan, nan),
        None, True,
        (*artifact.notes, f"prompt {ws.prompt_len} + {ws.new_tokens} new tokens a request, {ws.kv_cache} kv cache",
         "fidelity not measured in a server cell: the generate cell of this pipeline has it"),
        new_tokens=ws.new_tokens,
    )  # fmt: skip


#: how a serving cell of each workload builds what it serves
BUILDS = {"forward": _build_forward, "generate": _build_generate}


def measure_server_cell(
    cell: Cell,
    identity: CellIdentity,
    references: References,
    tools: Instruments,
    settings: CellSettings,
    workdir: Path,
) -> CellResult:
    """The cell served under its load; an exception for a cell that failed (the executor maps it)."""
    serving = settings.serving
    assert serving is not None
    build = BUILDS.get(cell.spec.workload)
    if build is None:
        raise NotApplicable(
            f"the server scenario serves forward and generate models for now; a {cell.spec.workload} "
            "workload's request loop (one sampling run per batch of images) is not built yet"
        )
    device = tools.device
    with PeakRSS() as rss:
        built = build(cell, references, tools, settings, workdir)
        server = built.serve
        primed = server.prime(prime_sizes(cell.batch_size))
        if serving.slo_x is not None:  # `--slo-p99-ms 3x`: this cell's own batch-1 latency, times 3
            serving = replace(serving, slo_p99_ms=serving.slo_x * primed[1] * 1e3)
        watch = GpuWatch(tools.nvml, tools.synchronize)
        meter = ContentionMeter(
            torch.get_num_threads(),
            gpu_processes=gpu_process_reader(tools.nvml) if tools.nvml is not None else None,
            own_pids=settings.run_pids,
        )
        watch.timed_start()
        meter.start()
        served = _serve(cell, identity, serving, server, primed, built.new_tokens, tools)
        contention = meter.stop()
        watch.timed_end()
    loads, stats = served.loads, served.chosen.stats
    capacity = implied_capacity(primed)
    notes = [
        *built.notes,
        "primed "
        + ", ".join(f"b{n} {s * 1e3:.1f} ms" for n, s in primed.items())
        + f" (implied capacity {capacity:.3g} items/s)",
        *([served.note] if served.note else []),
    ]
    if stats.overloaded:
        notes.append(
            f"overloaded: {stats.dropped} of {stats.requests} requests dropped, achieved {stats.achieved_qps:.3g} "
            f"of {stats.target_qps:.3g} qps offered"
        )
    if contention.contended:
        notes.append(f"contended: {contention.describe()}")
    more: dict[str, Any] = {}
    if served.peak_qps is not None:
        more["peak_qps"] = served.peak_qps
        more["probes"] = len(loads)
    kept = list(enumerate(loads))
    if sum(len(load.records) for load in loads) > MAX_KEPT_REQUESTS:  # a long search at high rates
        kept = [(i, load) for i, load in kept if load is served.chosen]
        notes.append(
            f"requests.csv keeps the row's probe only: the {len(loads)} probes held over {MAX_KEPT_REQUESTS:,}"
        )
    tables: Tables = {
        "requests.csv": tuple(r for i, load in kept for r in _request_rows(load, i)),
        "probes.csv": tuple({"probe": i, **load.stats.row()} for i, load in enumerate(loads)),
    }
    if served.watched is not None:
        watched = served.watched
        tables["timeseries.csv"] = tuple(watched.rows)
        if watched.verdicts:
            tables["soak.csv"] = tuple(watched.verdicts)
            more["soak_s"] = serving.soak_s
            more["soak_verdicts"] = "; ".join(f"{v['check']}: {v['verdict']}" for v in watched.verdicts)
        notes.extend(f"monitor sink dropped: {error}" for error in watched.sink_errors)
    # a generate request's items are its tokens; a single-stream soak's request is a call at the cell's batch
    closed_loop = cell.target_qps is None and not serving.find_peak
    items_per_request = (built.new_tokens or 1) * (cell.batch_size if closed_loop else 1)
    rate = stats.achieved_qps * items_per_request
    throughput = Throughput.of(1, 1e3 / rate if rate > 0 else math.inf, built.work.gflops_per_item,
                               built.precision, tools.peak)  # fmt: skip
    return CellResult(
        identity=identity,
        outcome=CellOutcome("ok", notes="; ".join(notes)),
        build=BuildResult(
            built.runtime,
            built.precision,
            built.build_s,
            built.first_call_ms,
            built.params,
            built.model_bytes,
        ),
        latency=request_latency(served.chosen),
        contention=contention,
        throughput=throughput,
        footprint=Footprint.of(rss, device, built.through_torch),
        work=built.work,
        fidelity=built.fidelity,
        gpu=watch.observation(),
        generation=_request_generation(stats, built, rate, settings),
        serving=ServingMetrics.of(stats, serving.max_queue_delay_ms, serving.slo_p99_ms, **more),
        tables=tables,
    )


def implied_capacity(primed: dict[int, float]) -> float:
    """Items/s the fastest primed batch size would serve back to back: where a peak search starts."""
    return max(n / s for n, s in primed.items())


def _request_generation(
    stats: Any, built: Built, tokens_s: float, settings: CellSettings
) -> GenerationMetrics | None:
    """A generate server row's TTFT and TPOT: the medians over its requests, from scheduled arrival
    (the p99s are in probes.csv); output tokens/s at the achieved rate (``tokens_s``). The rest is the
    generate cell's."""
    ws = settings.workload
    if built.new_tokens is None or ws is None:
        return None
    nan = math.nan
    return GenerationMetrics(
        ws.prompt_len, ws.new_tokens, ws.kv_cache, stats.ttft_ms_p50, stats.tpot_ms_p50, nan, nan,
        stats.latency_ms_p50, tokens_s, nan, nan, nan, nan, nan,
    )  # fmt: skip


@dataclass(frozen=True)
class Served:
    """A serving cell's loads: all of them, the one its row reports, the search's result, the soak's series."""

    loads: list[LoadResult]
    chosen: LoadResult
    note: str | None = None
    peak_qps: float | None = None  # a --find-peak search's answer (0: no load met the SLO)
    #: a watched load's time series (a soak's with its verdicts)
    watched: Watched | None = None


def _serve(
    cell: Cell,
    identity: CellIdentity,
    serving: ServingSettings,
    server: Any,
    primed: dict[int, float],
    new_tokens: int | None,
    tools: Instruments,
) -> Served:
    """Run the cell's loads: one at its rate, a peak search's probes, or a soak."""
    policy = BatchingPolicy(cell.batch_size, serving.max_queue_delay_ms / 1e3)
    slowest = max(primed.values())
    if serving.soak_s is not None or serving.metrics_port is not None:
        from bench.harness.soak import watched_load

        load, watched = watched_load(cell, identity, serving, server, policy, slowest, new_tokens, tools)
        return Served([load], load, watched=watched)
    if not serving.find_peak:
        assert cell.target_qps is not None
        spec = LoadSpec(cell.target_qps, serving.duration_s, serving.seed, policy, serving.slo_p99_ms,
                        new_tokens, slowest_batch_s=slowest)  # fmt: skip
        load = run_threaded_load(spec, server)
        return Served([load], load)
    loads: list[LoadResult] = []

    def probe(qps: float) -> Any:
        spec = LoadSpec(qps, probe_duration(qps, serving.duration_s), serving.seed, policy, serving.slo_p99_ms,
                        new_tokens, slowest_batch_s=slowest)  # fmt: skip
        loads.append(run_threaded_load(spec, server))
        return loads[-1].stats

    capacity = implied_capacity(primed)
    assert serving.slo_p99_ms is not None
    result = find_peak(probe, START_SHARE * capacity)
    # the row reports the peak's own probe; with none met, the lowest rate probed
    met = [load for load in loads if load.stats.slo_met and load.stats.target_qps == result.peak_qps]
    chosen = met[-1] if met else min(loads, key=lambda load: load.stats.target_qps)
    return Served(loads, chosen, result.describe(serving.slo_p99_ms), peak_qps=result.peak_qps)


def request_latency(load: LoadResult) -> LatencyStats:
    """The latency columns of a server row: its measured requests, from scheduled arrival (dropped: infinite)."""
    stats = load.stats
    done = np.array(
        [(r.end_s - r.arrival_s) * 1e3 for r in load.records if not r.warmup and r.completed], dtype=float
    )
    if len(done) == 0:
        nan = math.nan
        if stats.requests == 0:  # nothing measured (a load shorter than its warm-up): no latency at all
            return LatencyStats(0, nan, nan, nan, nan, nan, nan, nan, nan)
        return LatencyStats(stats.requests, math.inf, math.inf, math.inf, nan, nan, nan, nan, nan)
    return LatencyStats(
        n=stats.requests,
        p50=stats.latency_ms_p50,
        p90=stats.latency_ms_p90,
        p99=stats.latency_ms_p99,
        mean=float(done.mean()),
        std=float(done.std(ddof=1)) if len(done) > 1 else math.nan,
        min=float(done.min()),
        # not torch.utils.benchmark's noise rule: a queue's latencies spread by design
        iqr_over_median=math.nan,
        ci_rel_halfwidth=math.nan,  # a load is one run of a queue, not independent samples
    )


def _request_rows(load: LoadResult, probe: int) -> list[dict[str, Any]]:
    return [
        {
            "probe": probe,
            "request_id": r.request_id,
            "warmup": r.warmup,
            "arrival_s": r.arrival_s,
            "issued_s": r.issued_s,
            "start_s": r.start_s,
            "end_s": r.end_s,
            "first_token_s": r.first_token_s,
            "batch_id": r.batch_id if r.batch_id >= 0 else None,
            "batch_size": r.batch_size or None,
        }  # fmt: skip
        for r in load.records
    ]

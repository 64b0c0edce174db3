"""A generate cell: a causal LM's whole greedy generation, timed step by step, against the fp32 model's.

What one timed call is: a prompt of ``prompt_len`` tokens goes in, prefill, then
``new_tokens - 1`` greedy decode steps at a fixed length (no early stop at an end
token), so every generation does the same work. The step clock marks the first
token and every decode step (bench.measure.step_clock: CUDA events and one
synchronize per generation on a GPU); whole generations are repeated under the
same adaptive stopping rule as forward cells, on their end-to-end time, and every
step of every timed generation is kept (samples.csv, phases ``prefill``/``decode``).

The order, as for a forward cell:
1. build: the KV cache is set up on the device copy of the fp32 model *before* the
   passes, so a cast casts it and ``compile`` compiles the prefill with it in place
   (the decode graph compiles in the first generation, ``first_call_ms``); ``build_s``;
2. time: the generations; the cache is reset (static: nothing reallocated) before each;
3. observe: the cache's bytes after a generation (checked against the layout's
   2 x layers x KV heads x head dim x bytes x tokens x batch), fidelity teacher-forced
   on the fp32 model's tokens (bench.measure.generation), energy per token of prefill
   and of decode on a GPU.

Models are seen only through the causal-LM interface (reference_models.causal_lm), so
the reference ``gpt``, a user's module and a transformers model run the same loop.
Only torch artifacts run here: the plan skips pipelines that export (an ONNX or
TensorRT decode loop with a KV cache is not built).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.core.artifact import TorchArtifact
from bench.core.errors import NotApplicable
from bench.hardware.peak import peak_note
from bench.harness.cell import CellSettings, Instruments, apply_pipeline, sample_watched
from bench.harness.config import WorkloadSettings
from bench.harness.plan import Cell
from bench.harness.reference import References, strict_fp32
from bench.harness.result import (
    BuildResult,
    CellIdentity,
    CellOutcome,
    CellResult,
    PhaseSample,
    Throughput,
)
from bench.measure.clocks import HostTimer
from bench.measure.fidelity import Fidelity
from bench.measure.generation import GenerationMetrics, GenerationTimes, decode_bytes, token_fidelity
from bench.measure.gpu_watch import GpuWatch
from bench.measure.memory import (
    Footprint,
    PeakRSS,
    release_device_cache,
    reset_device_peak,
)
from bench.measure.stats import summarize
from bench.measure.step_clock import HostStepClock, StepClock, step_clock_for
from bench.measure.work import WorkPerItem
from optimizers.registry import PassContext
from reference_models.causal_lm import interface_problem
from reference_models.spec import seeded_generator

#: a measured cache more than this far from the layout's bytes is named in the notes
CACHE_BYTES_TOLERANCE = 0.01


def generate(
    lm: Any,
    prompt: torch.Tensor,
    new_tokens: int,
    clock: StepClock,
    teacher: torch.Tensor | None = None,
    keep_logits: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One greedy generation of ``new_tokens`` tokens ([B, N]) from ``prompt`` ([B, P]) with the model's cache.

    The clock is started as the prompt goes in and marked when each new token exists.
    ``teacher`` ([B, N]) feeds those tokens instead of the model's own (teacher
    forcing: the next-token logits are then conditioned on the reference's prefix);
    ``keep_logits`` returns the next-token logits of every step ([B, N, V], fp32 on
    the CPU), which synchronizes per step: never on a timed generation.
    """
    device = prompt.device
    lm.reset_cache()
    with torch.inference_mode():
        clock.start()
        logits = lm(prompt, torch.arange(prompt.shape[1], device=device))[:, -1]
        token = logits.argmax(dim=-1)
        clock.mark()
        tokens, kept = [token], [logits.float().cpu()] if keep_logits else []
        position = torch.tensor([prompt.shape[1]], device=device)
        for step in range(1, new_tokens):
            fed = teacher[:, step - 1] if teacher is not None else token
            logits = lm(fed[:, None], position)[:, -1]
            token = logits.argmax(dim=-1)
            position += 1
            clock.mark()
            tokens.append(token)
            if keep_logits:
                kept.append(logits.float().cpu())
    return torch.stack(tokens, dim=1), torch.stack(kept, dim=1) if keep_logits else None


def prompts(vocab_size: int, batch: int, length: int, seed: int) -> torch.Tensor:
    """Seeded random token ids [batch, length]: the same prompt for every pipeline of a (model, batch)."""
    return torch.randint(0, vocab_size, (batch, length), generator=seeded_generator(seed), dtype=torch.int64)


def check_lm(module: nn.Module, name: str, prompt_len: int, new_tokens: int) -> None:
    """A model the generate loop can run, with room for the prompt and the new tokens (ValueError: why not)."""
    problem = interface_problem(module)
    if problem is not None:
        raise ValueError(f"model {name!r} does not follow the causal-LM interface: {problem}")
    context = int(module.max_seq_len)
    if prompt_len + new_tokens > context:
        raise ValueError(
            f"--prompt-len {prompt_len} + --new-tokens {new_tokens} exceed {name}'s context of {context} tokens"
        )


def _variant(ws: WorkloadSettings) -> str:
    return f"generate-p{ws.prompt_len}-n{ws.new_tokens}-{ws.kv_cache}"


def _reference(
    base: nn.Module, references: References, prompt: torch.Tensor, ws: WorkloadSettings
) -> dict[str, torch.Tensor]:
    """The fp32 model's greedy tokens and next-token logits on ``prompt`` (true fp32: TF32 off on CUDA)."""
    device = references.device
    lm = references.device_copy(base)
    lm.setup_cache(prompt.shape[0], ws.prompt_len + ws.new_tokens, ws.kv_cache)
    with strict_fp32(device):
        tokens, logits = generate(
            lm, prompt.to(device.torch_name), ws.new_tokens, HostStepClock(), keep_logits=True
        )
    assert logits is not None
    return {"tokens": tokens.cpu(), "logits": logits}


def _element_size(module: nn.Module) -> int:
    """Bytes per element of the model's floating-point weights: its KV cache's dtype."""
    for p in module.parameters():
        if p.is_floating_point():
            return torch.empty((), dtype=p.dtype).element_size()
    return 4


def _cache_note(lm: Any, measured: int, ws: WorkloadSettings, batch: int, element_size: int) -> str | None:
    """None when the cache holds the layout's bytes; else a note saying both."""
    held = ws.prompt_len + ws.new_tokens - (0 if ws.kv_cache == "static" else 1)
    expected = lm.kv_shape().bytes_for(held, batch, element_size)
    if expected and abs(measured - expected) <= CACHE_BYTES_TOLERANCE * expected:
        return None
    return (
        f"kv cache holds {measured / 2**20:.2f} MB, the layout says {expected / 2**20:.2f} MB "
        f"({held} tokens x batch {batch} x {element_size} B)"
    )


@dataclass(frozen=True)
class BuiltLM:
    """A causal LM's pipeline built on the device, its cache set up: what a generate or server cell runs."""

    artifact: TorchArtifact
    build_s: float
    params: int
    element_size: int  # bytes per element of its floating-point weights: its KV cache's dtype


def build_lm(
    cell: Cell,
    base: nn.Module,
    prompt: torch.Tensor,
    references: References,
    tools: Instruments,
    ws: WorkloadSettings,
    batch_sizes: tuple[int, ...],
    workdir: Path,
) -> BuiltLM:
    """Build the cell's pipeline on a device copy of ``base`` (timed), then reset the device peak.

    The KV cache is set up for ``prompt``'s batch *before* the passes, so a cast casts it and
    ``compile`` compiles the prefill with it in place; after them it is set up again (a reset, or
    a new cache in the pipeline's dtype). Calibration batches are other seeded prompts.
    """
    device = tools.device
    batch, max_len = prompt.shape[0], ws.prompt_len + ws.new_tokens

    def calibration(n: int) -> Iterator[tuple[torch.Tensor, ...]]:
        for i in range(n):
            other = prompts(int(base.vocab_size), batch, ws.prompt_len, references.seed + 1000 + i)
            yield (other, torch.arange(ws.prompt_len))

    ctx = PassContext(
        device=device,
        example_inputs=(prompt, torch.arange(ws.prompt_len)),
        calibration=calibration,
        workdir=workdir,
        batch_sizes=batch_sizes,
        cache_key=f"{cell.spec.name}-{cell.size}-{cell.pipeline.text}-generate",
    )
    t0 = time.perf_counter()
    start = references.device_copy(base)
    start.setup_cache(batch, max_len, ws.kv_cache)  # before the passes: casts cast it, compile sees it
    artifact, last_eager = apply_pipeline(cell, TorchArtifact(module=start), ctx)
    if not isinstance(artifact, TorchArtifact):
        raise NotApplicable(f"the generate workload runs torch models; this pipeline made {artifact.kind}")
    artifact.module.setup_cache(
        batch, max_len, ws.kv_cache
    )  # a reset, or a new cache in the pipeline's dtype
    tools.synchronize()
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in last_eager.module.parameters())
    element_size = _element_size(last_eager.module)
    del last_eager, start
    release_device_cache(device)
    reset_device_peak(device)
    return BuiltLM(artifact, build_s, params, element_size)


def measure_generate_cell(
    cell: Cell,
    identity: CellIdentity,
    references: References,
    tools: Instruments,
    settings: CellSettings,
    workdir: Path,
) -> CellResult:
    """The generate cell's result with every measured part; an exception for a cell that failed."""
    ws = settings.workload
    if ws is None:
        raise ValueError("a generate cell needs the run's workload settings")
    device = tools.device
    base = references.base_module(cell)
    check_lm(base, cell.spec.name, ws.prompt_len, ws.new_tokens)
    batch = cell.batch_size
    prompt = prompts(int(base.vocab_size), batch, ws.prompt_len, references.seed)
    ref = references.workload_reference(cell, _variant(ws), lambda: _reference(base, references, prompt, ws))
    placed = prompt.to(device.torch_name)

    with PeakRSS() as rss:
        built = build_lm(cell, base, prompt, references, tools, ws, settings.batch_sizes, workdir)
        artifact, lm, build_s, params = built.artifact, built.artifact.module, built.build_s, built.params
        element_size = built.element_size
        first_call_ms = HostTimer(synchronize=tools.synchronize).measure(
            lambda: generate(lm, placed, ws.new_tokens, HostStepClock())
        )
        clock = step_clock_for(device)
        timed_steps: list[tuple[float, ...]] = []
        recording = [False]
        last_tokens: list[torch.Tensor] = []

        def one_generation() -> float:
            tokens, _ = generate(lm, placed, ws.new_tokens, clock)
            marks = clock.times_ms()
            if recording[0]:
                timed_steps.append(tuple(marks))
                last_tokens[:] = [tokens]
            return marks[-1]

        def timed_start() -> None:
            recording[0] = True

        region = sample_watched(one_generation, tools, settings, on_timed_start=timed_start)
        sampled, contention, watch = region.sampled, region.contention, region.watch
        cache_bytes = int(lm.cache_bytes())  # after a whole generation: every position written
        energy_notes, energy = _energy(watch, lm, placed, ws, batch)
        _, forced_logits = generate(
            lm,
            placed,
            ws.new_tokens,
            HostStepClock(),
            teacher=ref["tokens"].to(device.torch_name),
            keep_logits=True,
        )
    assert forced_logits is not None
    tokens = token_fidelity(
        ref["logits"], forced_logits, ref["tokens"], last_tokens[0].cpu(), ws.min_token_match
    )
    times = GenerationTimes(batch, ws.prompt_len, ws.new_tokens, tuple(timed_steps))
    weight_bytes = (
        artifact.stored_bytes()
    )  # weights and persistent buffers: not the KV cache (non-persistent)
    peak = tools.peak
    generation = GenerationMetrics.of(
        times,
        ws.kv_cache,
        cache_bytes,
        decode_bytes(weight_bytes, cache_bytes, ws.kv_cache, ws.prompt_len, ws.new_tokens),
        peak.copy_bytes_s if peak is not None else None,
    )
    if energy is not None:
        generation = _with_energy(generation, energy)
    latency = summarize(sampled.latencies_ms)
    flops_per_token = (
        2.0 * params
    )  # every weight multiplies once per token; attention's own FLOPs not counted
    throughput = Throughput.of(
        batch * ws.new_tokens, latency.p50, flops_per_token / 1e9, artifact.precision, peak
    )
    notes = [
        *artifact.notes,
        f"stop={sampled.stop_reason}",
        f"prompt {ws.prompt_len} + {ws.new_tokens} new tokens, {ws.kv_cache} kv cache",
        "work: 2 x params FLOPs per token",
        *energy_notes,
    ]
    cache_note = _cache_note(lm, cache_bytes, ws, batch, element_size)
    if cache_note is not None:
        notes.append(cache_note)
    if contention.contended:
        notes.append(f"contended: {contention.describe()}")
    above = peak_note(peak, throughput.pct_of_peak, throughput.peak_dtype(artifact.precision, peak))
    if above is not None:
        notes.append(above)
    return CellResult(
        identity=identity,
        outcome=CellOutcome("ok", notes="; ".join(notes)),
        build=BuildResult(
            "torch-compiled" if artifact.compiled else "torch-eager",
            artifact.precision,
            build_s,
            first_call_ms,
            params,
            weight_bytes,
        ),
        latency=latency,
        contention=contention,
        throughput=throughput,
        footprint=Footprint.of(rss, device),
        work=WorkPerItem(flops_per_token / 1e9, float("nan"), float("nan"), float("nan"), float("nan")),
        fidelity=Fidelity.gated_by(tokens.ok),
        gpu=watch.observation(),
        generation=generation,
        tokens=tokens,
        samples_ms=tuple(sampled.latencies_ms),
        phase_samples=_phase_samples(timed_steps),
    )


def _phase_samples(timed_steps: list[tuple[float, ...]]) -> tuple[PhaseSample, ...]:
    """Each timed generation's prefill (step 0) and decode steps (1 .. N-1), in ms of their own."""
    out: list[PhaseSample] = []
    for i, marks in enumerate(timed_steps):
        out.append(("prefill", i, 0, marks[0]))
        out.extend(("decode", i, step, marks[step] - marks[step - 1]) for step in range(1, len(marks)))
    return tuple(out)


def _energy(
    watch: GpuWatch, lm: Any, placed: torch.Tensor, ws: WorkloadSettings, batch: int
) -> tuple[list[str], tuple[float, float] | None]:
    """Joules per token of prefill and of decode on a GPU (None elsewhere), each from a window of its own.

    Prefill alone is run back to back for one window; whole generations for another.
    Decode's energy is a generation's less its prefill's, over the decode steps' tokens.
    """
    if ws.new_tokens < 2:
        return [], None

    def prefill() -> None:
        lm.reset_cache()
        with torch.inference_mode():
            lm(placed, torch.arange(ws.prompt_len, device=placed.device))

    prefill_window = watch.measure_energy(prefill, batch * ws.prompt_len)
    generation_window = watch.measure_energy(lambda: generate(lm, placed, ws.new_tokens, HostStepClock()), 1)
    if prefill_window is None or generation_window is None:
        return [], None
    per_prefill_j = prefill_window.joules_per_item * batch * ws.prompt_len
    decode_j = (generation_window.joules_per_item - per_prefill_j) / (batch * (ws.new_tokens - 1))
    notes = [f"energy prefill: {prefill_window.note()}", f"energy generation: {generation_window.note()}"]
    return notes, (prefill_window.joules_per_item, decode_j)


def _with_energy(generation: GenerationMetrics, energy: tuple[float, float]) -> GenerationMetrics:
    return replace(generation, energy_j_per_token_prefill=energy[0], energy_j_per_token_decode=energy[1])

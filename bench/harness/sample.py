"""A sample cell: latent diffusion end to end (the sampler's UNet steps, then the VAE), timed per component.

What one timed call is: from the seeded starting noise and class labels, ``steps``
UNet calls with the sampler's step rule between them, classifier-free guidance
running the conditional and unconditional halves as one doubled batch (as Stable
Diffusion pipelines do; ``--guidance 1`` runs the plain batch), then the VAE decode.
The step clock is marked around every UNet call and after every step rule
(bench.measure.diffusion says the split), with one synchronize per run on a GPU.

The pipeline's passes are applied to each network of the pipeline, the UNet and the
VAE, each with example inputs of its own (the UNet's at the CFG batch). A pass that
does not apply to one of them (NotApplicable) leaves that network as it was and
says so in the notes; one that applies to neither makes the cell ``skipped``. The
latents stay fp32 between steps whatever precision the networks run in: each
network's runtime casts its inputs (as it does for a forward cell).

Fidelity: PSNR and cosine of the final image against the fp32 pipeline run with the
same noise, labels, sampler and steps; the error accumulated over every step is
what a user of int8 or fp16 gets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from bench.core.artifact import Artifact, TorchArtifact, present_inputs
from bench.core.device import Device
from bench.core.errors import NotApplicable
from bench.core.text import one_line
from bench.harness.cell import CellSettings, Instruments, apply_pipeline, sample_watched, stored_bytes_of
from bench.harness.config import WorkloadSettings
from bench.harness.plan import Cell
from bench.harness.reference import References, strict_fp32
from bench.harness.result import BuildResult, CellIdentity, CellOutcome, CellResult, PhaseSample, Throughput
from bench.measure.clocks import HostTimer
from bench.measure.diffusion import SamplingMetrics, SamplingRun
from bench.measure.fidelity import compare_outputs
from bench.measure.memory import (
    Footprint,
    PeakRSS,
    release_device_cache,
    reset_device_peak,
)
from bench.measure.stats import summarize
from bench.measure.step_clock import HostStepClock, StepClock, step_clock_for
from bench.measure.work import WorkPerItem, count_flops
from bench.runtimes import LoadedModel, first_tensor, load
from optimizers.registry import PassContext
from reference_models.samplers import Sampler, guided_noise, make_sampler

Network = Callable[[tuple[torch.Tensor, ...]], torch.Tensor]


def on_device(runtime: LoadedModel, device: Device) -> Network:
    """The network as a call on device tensors returning an fp32 device tensor, without a host round trip
    for torch runtimes (an ONNX Runtime output comes back through the CPU, as that runtime works)."""

    def call(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        output = runtime.run(runtime.prepare(inputs))
        try:
            return first_tensor(output).float()
        except TypeError:  # numpy arrays from onnxruntime
            return runtime.to_torch(output).to(device.torch_name)

    return call


def sample(
    unet: Network,
    vae: Network,
    noise: torch.Tensor,
    labels: torch.Tensor,
    sampler: Sampler,
    guidance: float,
    null_class: int,
    scale_factor: float,
    clock: StepClock,
) -> torch.Tensor:
    """One sampling run (reference_models.samplers.sample's algorithm) with the clock marked for the split."""

    def timed_unet(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        clock.mark()
        eps = unet((x, t, y))
        clock.mark()
        return eps

    with torch.inference_mode():
        clock.start()
        x = noise * sampler.init_noise_sigma
        for i in range(len(sampler.timesteps)):
            model_input = sampler.scale_model_input(x, i)
            eps = guided_noise(timed_unet, model_input, sampler.timesteps[i], labels, null_class, guidance)
            x = sampler.step(eps, i, x)
            clock.mark()
        image = vae((x / scale_factor,))
        clock.mark()
    return image


def _variant(ws: WorkloadSettings) -> str:
    return f"sample-{ws.sampler}-s{ws.steps}-g{ws.guidance:g}"


def _sampler_on(base: nn.Module, ws: WorkloadSettings, device: Device) -> Sampler:
    sampler = make_sampler(ws.sampler, base.alphas_cumprod(), ws.steps)
    sampler.timesteps = sampler.timesteps.to(device.torch_name)
    return sampler


def _reference(
    base: nn.Module, references: References, noise: torch.Tensor, labels: torch.Tensor, ws: WorkloadSettings
) -> dict[str, torch.Tensor]:
    """The fp32 eager pipeline's image for these noise and labels (true fp32: TF32 off on CUDA)."""
    device = references.device
    unet, vae = references.device_copy(base.unet), references.device_copy(base.vae)

    def plain(module: nn.Module) -> Network:
        def call(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
            return first_tensor(module(*inputs)).float()

        return call

    with strict_fp32(device):
        image = sample(
            plain(unet),
            plain(vae),
            noise.to(device.torch_name),
            labels.to(device.torch_name),
            _sampler_on(base, ws, device),
            ws.guidance,
            base.null_class,
            base.config.scale_factor,
            HostStepClock(),
        )
    return {"image": image.float().cpu()}


def _network_inputs(
    base: nn.Module, unet_batch: int, batch: int, seed: int
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Example inputs of each network at the batch it runs at: the UNet's (latents, t, labels), the VAE's latent."""
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn((unet_batch, *base.latent_shape(1)[1:]), generator=gen)
    t = torch.randint(0, base.config.num_train_timesteps, (unet_batch,), generator=gen)
    labels = torch.randint(0, base.config.num_classes + 1, (unet_batch,), generator=gen)
    vae_latent = torch.randn((batch, *base.latent_shape(1)[1:]), generator=gen)
    return (latents, t, labels), (vae_latent,)


def _build_network(
    cell: Cell, name: str, module: nn.Module, ctx: PassContext
) -> tuple[Artifact, TorchArtifact, list[str], bool]:
    """The pipeline applied to one network: the artifact, its last eager model, notes, whether it applied.

    NotApplicable leaves the network as built (fp32 eager), with a note saying why.
    """
    try:
        artifact, last_eager = apply_pipeline(cell, TorchArtifact(module=module), ctx)
        return artifact, last_eager, [f"{name}: {n}" for n in artifact.notes], True
    except NotApplicable as exc:
        start = TorchArtifact(module=module)
        why = f"{name}: {cell.pipeline.text} does not apply ({one_line(exc, 160)}), so it ran fp32 eager"
        return start, start, [why], False


def _calibration(
    inputs: tuple[torch.Tensor, ...], seed: int
) -> Callable[[int], Iterator[tuple[torch.Tensor, ...]]]:
    """Calibration batches shaped like ``inputs``: N(0, 1) floats, integers drawn in the example's range."""

    def batches(n: int) -> Iterator[tuple[torch.Tensor, ...]]:
        for i in range(n):
            gen = torch.Generator().manual_seed(seed + 1000 + i)
            out = []
            for t in inputs:
                if t.is_floating_point():
                    out.append(torch.randn(t.shape, generator=gen))
                else:
                    out.append(torch.randint(0, int(t.max()) + 1, t.shape, generator=gen))
            yield tuple(out)

    return batches


def measure_sample_cell(
    cell: Cell,
    identity: CellIdentity,
    references: References,
    tools: Instruments,
    settings: CellSettings,
    workdir: Path,
) -> CellResult:
    """The sample cell's result with every measured part; an exception for a cell that failed."""
    ws = settings.workload
    if ws is None:
        raise ValueError("a sample cell needs the run's workload settings")
    device = tools.device
    base = references.base_module(cell)
    batch = cell.batch_size
    noise, labels = cell.spec.example_inputs(batch, cell.size, references.seed)
    ref = references.workload_reference(
        cell, _variant(ws), lambda: _reference(base, references, noise, labels, ws)
    )
    unet_batch = batch if ws.guidance == 1 else 2 * batch
    unet_inputs, vae_inputs = _network_inputs(base, unet_batch, batch, references.seed)
    notes: list[str] = []
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        built = {}
        for name, module, inputs in (("unet", base.unet, unet_inputs), ("vae", base.vae, vae_inputs)):
            net_dir = workdir / name
            net_dir.mkdir(parents=True, exist_ok=True)
            ctx = PassContext(
                device=device,
                example_inputs=inputs,
                calibration=_calibration(inputs, references.seed),
                workdir=net_dir,
                batch_sizes=(len(inputs[0]),),
                cache_key=f"{cell.spec.name}-{cell.size}-{name}-{cell.pipeline.text}",
            )
            built[name] = _build_network(cell, name, references.device_copy(module), ctx)
            notes.extend(built[name][2])
        if not (built["unet"][3] or built["vae"][3]):
            raise NotApplicable(
                f"{cell.pipeline.text} applies to neither the UNet nor the VAE: {'; '.join(notes)}"
            )
        tools.synchronize()
        build_s = time.perf_counter() - t0
        (unet_art, unet_eager, _, _), (vae_art, vae_eager, _, _) = built["unet"], built["vae"]
        params = sum(p.numel() for p in unet_eager.module.parameters()) + sum(
            p.numel() for p in vae_eager.module.parameters()
        )
        work_gflops, work_note = _work(unet_eager, vae_eager, unet_inputs, vae_inputs, ws, batch, device)
        model_bytes = (stored_bytes_of(unet_art) or 0) + (stored_bytes_of(vae_art) or 0)
        del built, unet_eager, vae_eager
        release_device_cache(device)
        reset_device_peak(device)
        unet_rt, vae_rt = load(unet_art, device), load(vae_art, device)
        unet, vae = on_device(unet_rt, device), on_device(vae_rt, device)
        sampler = _sampler_on(base, ws, device)
        noise_d, labels_d = noise.to(device.torch_name), labels.to(device.torch_name)
        scale = base.config.scale_factor

        def run(clock: StepClock) -> torch.Tensor:
            return sample(unet, vae, noise_d, labels_d, sampler, ws.guidance, base.null_class, scale, clock)

        image_box: list[torch.Tensor] = []
        first_call_ms = HostTimer(synchronize=tools.synchronize).measure(
            lambda: image_box.append(run(HostStepClock()))
        )
        image = image_box.pop().float().cpu()
        clock = step_clock_for(device)
        runs: list[SamplingRun] = []
        recording = [False]

        def one_run() -> float:
            run(clock)
            marks = clock.times_ms()
            if recording[0]:
                runs.append(SamplingRun.from_marks(marks, ws.steps))
            return marks[-1]

        def timed_start() -> None:
            recording[0] = True

        region = sample_watched(one_run, tools, settings, on_timed_start=timed_start)
        sampled, contention, watch = region.sampled, region.contention, region.watch
        energy = watch.measure_energy(lambda: run(HostStepClock()), batch)
    latency = summarize(sampled.latencies_ms)
    metrics = SamplingMetrics.of(runs, batch, ws.guidance, ws.sampler)
    precision = (
        unet_art.precision
        if unet_art.precision == vae_art.precision
        else (f"unet {unet_art.precision}, vae {vae_art.precision}")
    )
    throughput = Throughput.of(batch, latency.p50, work_gflops, unet_art.precision, tools.peak)
    notes = [
        *notes,
        f"stop={sampled.stop_reason}",
        f"{ws.sampler} {ws.steps} steps, guidance {ws.guidance:g} (unet batch {unet_batch})",
        *([work_note] if work_note else []),
    ]
    if energy is not None:
        notes.append(energy.note())
    if contention.contended:
        notes.append(f"contended: {contention.describe()}")
    through_torch = unet_rt.allocates_through_torch and vae_rt.allocates_through_torch
    runtime_name = (
        unet_rt.runtime_name if unet_rt.runtime_name == vae_rt.runtime_name
        else f"unet {unet_rt.runtime_name}, vae {vae_rt.runtime_name}"
    )  # fmt: skip
    return CellResult(
        identity=identity,
        outcome=CellOutcome("ok", notes="; ".join(notes)),
        build=BuildResult(runtime_name, precision, build_s, first_call_ms, params, model_bytes),
        latency=latency,
        contention=contention,
        throughput=throughput,
        footprint=Footprint.of(rss, device, through_torch),
        work=WorkPerItem(work_gflops, float("nan"), float("nan"), float("nan"), float("nan")),
        fidelity=compare_outputs(ref["image"], image, settings.min_psnr_db),
        gpu=watch.observation(),
        energy=energy,
        sampling=metrics,
        samples_ms=tuple(sampled.latencies_ms),
        phase_samples=_phase_samples(runs),
    )


def _phase_samples(runs: list[SamplingRun]) -> tuple[PhaseSample, ...]:
    out: list[PhaseSample] = []
    for i, run in enumerate(runs):
        out.extend(("unet", i, step, ms) for step, ms in enumerate(run.unet_ms))
        out.append(("vae", i, 0, run.vae_ms))
    return tuple(out)


def _work(
    unet: TorchArtifact,
    vae: TorchArtifact,
    unet_inputs: tuple[torch.Tensor, ...],
    vae_inputs: tuple[torch.Tensor, ...],
    ws: WorkloadSettings,
    batch: int,
    device: Device,
) -> tuple[float, str | None]:
    """GFLOPs per image: steps x the UNet's FLOPs at the CFG batch, plus the VAE's, over the batch."""
    try:
        unet_flops = count_flops(
            unet.module, present_inputs(unet_inputs, device.torch_name, unet.input_dtype, unet.channels_last)
        )
        vae_flops = count_flops(
            vae.module, present_inputs(vae_inputs, device.torch_name, vae.input_dtype, vae.channels_last)
        )
    except Exception as exc:
        return float("nan"), f"work not counted ({one_line(exc, 160)})"
    return (ws.steps * unet_flops + vae_flops) / batch / 1e9, None

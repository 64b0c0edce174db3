"""Passes that stay in PyTorch: precision casts, memory format, torch.compile, CUDA graphs."""

from __future__ import annotations

import copy
from typing import ClassVar, Literal, get_args

import torch

from bench.core.artifact import Artifact, TorchArtifact, present_inputs
from bench.core.device import Device, emulated_dtype, supports_dtype
from optimizers.base import Pass, PassContext, check_choice, compiled_refusal, register_pass
from optimizers.state import ArtifactState


@register_pass
class Fp32(Pass):
    """The baseline: the model as built, fp32 eager. Every speedup is relative to it."""

    name = "fp32"
    summary = "fp32 eager baseline (no change)"

    def refuses(self, state: ArtifactState) -> str | None:
        if state.precision != "fp32":
            return (
                f"fp32 changes nothing, so the model stays {state.precision}: "
                f"drop fp32 from the pipeline (it is the baseline on its own)"
            )
        return super().refuses(state)

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        return self.require(artifact, TorchArtifact)


class _CastPass(Pass):
    """Cast weights and floating-point inputs to a lower precision (what a GPU user does with .half())."""

    dtype: ClassVar[torch.dtype]

    def applies_to(self, device: Device) -> str | None:
        return supports_dtype(device, self.name)

    def default_exclusion(self, device: Device) -> str | None:
        return emulated_dtype(device, self.name)

    def refuses(self, state: ArtifactState) -> str | None:
        if state.compiled:
            return compiled_refusal(self.name)
        if state.precision != "fp32":
            return (
                f"{self.name} casts the fp32 model, and this one is already {state.precision}: keep one cast"
            )
        return super().refuses(state)

    def after(self, state: ArtifactState) -> ArtifactState:
        return state.evolve(precision=self.name)

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        art = self.require(artifact, TorchArtifact)
        module = copy.deepcopy(art.module).to(self.dtype)
        return art.evolve(module=module, precision=self.name, input_dtype=self.dtype)


@register_pass
class Fp16(_CastPass):
    name = "fp16"
    summary = "weights and activations in float16"
    dtype = torch.float16


@register_pass
class Bf16(_CastPass):
    name = "bf16"
    summary = "weights and activations in bfloat16"
    dtype = torch.bfloat16


@register_pass
class ChannelsLast(Pass):
    """NHWC memory format for weights and 4-D inputs: what oneDNN and cuDNN prefer for convolutions."""

    name = "channels_last"
    summary = "NHWC memory format for convolution weights and inputs"

    def refuses(self, state: ArtifactState) -> str | None:
        return compiled_refusal(self.name) if state.compiled else super().refuses(state)

    def after(self, state: ArtifactState) -> ArtifactState:
        return state.evolve(channels_last=True)

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        art = self.require(artifact, TorchArtifact)
        module = copy.deepcopy(art.module).to(memory_format=torch.channels_last)
        return art.evolve(module=module, channels_last=True)


class _Wrapper(Pass):
    """A pass that wraps the eager module (compile, cudagraph): nothing may rewrite or wrap it afterwards."""

    #: the reason for refusing a module that compile, cudagraph or pt2e-int8 already wrapped
    wrapped_reason: ClassVar[str]

    def refuses(self, state: ArtifactState) -> str | None:
        return self.wrapped_reason if state.compiled else super().refuses(state)

    def after(self, state: ArtifactState) -> ArtifactState:
        return state.evolve(compiled=True)


CompileMode = Literal[
    "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "freeze", "freeze-autotune"
]
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)
#: compile arguments that freeze: Inductor's ``freezing`` constant-folds the weights into the graph and
#: prepacks them for oneDNN (PyTorch's CPU inference recipe), under the torch.compile mode given here.
#: Freezing is read from Inductor's global config while Dynamo traces: ``torch.compile(options=
#: {"freezing": True})`` left all 12 weights of the DCGAN tiny as graph inputs, unpacked (torch 2.13),
#: and so did a backend that patched the config around ``compile_fx``; only the global flag, set while
#: the first call compiles, folded them. So ``apply`` sets the flag for every compile (on or off), and a
#: recompile later in the cell (a server's new batch size) freezes as the first compile did.
FREEZE_MODES: dict[str, str] = {"freeze": "default", "freeze-autotune": "max-autotune-no-cudagraphs"}


@register_pass
class Compile(_Wrapper):
    """torch.compile (Inductor). The compile is forced inside ``apply`` with one call on the
    example inputs, so its cost lands in ``build_s`` rather than hiding in the first timed call."""

    name = "compile"
    summary = (
        "torch.compile with Inductor; compile:MODE picks the mode; compile:freeze folds and prepacks the "
        "weights (CPU inference), compile:freeze-autotune adds the autotuner"
    )
    argument = "mode"
    wrapped_reason = (
        "compile cannot compile what compile, cudagraph or pt2e-int8 already wrapped: compile once "
        "(compile:reduce-overhead adds CUDA graphs)"
    )

    def __init__(self, *, mode: CompileMode | None = None) -> None:
        self.mode: str = "default" if mode is None else check_choice(self.name, "mode", mode, COMPILE_MODES)
        self.arg = mode

    def default_exclusion(self, device: Device) -> str | None:
        if "autotune" in self.mode and not device.is_cuda:
            return "autotuning targets GPU kernels; on CPU ask for it explicitly"
        return None

    def applies_to(self, device: Device) -> str | None:
        if self.mode == "reduce-overhead" and not device.is_cuda:
            return "reduce-overhead uses CUDA graphs; it has no effect on CPU"
        return None

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        art = self.require(artifact, TorchArtifact)
        module = copy.deepcopy(art.module)
        # Dynamo keeps state per code object for the whole process: after a batch-1 cell, the
        # batch-8 cell of the same model would compile a dynamic-batch graph ("automatic
        # dynamic"). Each cell gets what a fresh process would build: a static graph.
        torch.compiler.reset()
        torch._inductor.config.freezing = self.mode in FREEZE_MODES
        compiled = torch.compile(module, mode=FREEZE_MODES.get(self.mode, self.mode), dynamic=False)
        inputs = present_inputs(ctx.example_inputs, ctx.device.torch_name, art.input_dtype, art.channels_last)
        with torch.inference_mode():
            compiled(*inputs)
        return art.evolve(module=compiled, compiled=True, notes=(*art.notes, f"compile mode={self.mode}"))


class _GraphReplay(torch.nn.Module):
    """Replays one captured CUDA graph; inputs are copied into the captured buffers first.

    That device-to-device copy of the inputs is part of every timed call, as it is in
    a serving loop that feeds a graph new inputs; it is skipped only when the caller
    passes the captured buffers themselves.
    """

    def __init__(self, module: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> None:
        super().__init__()
        self.inner = module
        self.static_inputs = tuple(t.clone() for t in example)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):  # warm-up outside capture: cuDNN autotuning and lazy init
                module(*self.static_inputs)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.static_output = module(*self.static_inputs)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        for static, given in zip(self.static_inputs, inputs, strict=True):
            if static.shape != given.shape:
                raise ValueError(
                    f"CUDA graph captured for shape {tuple(static.shape)}, got {tuple(given.shape)}"
                )
            if static.data_ptr() != given.data_ptr():
                static.copy_(given)
        self.graph.replay()
        return self.static_output


@register_pass
class CudaGraph(_Wrapper):
    """Capture the forward once as a CUDA graph and replay it: removes per-kernel launch cost.

    Chosen over compile's `reduce-overhead` (which is also available, as
    `compile:reduce-overhead`) so the effect of graphs alone can be measured on an
    eager model; captured per batch size because a graph has fixed shapes.
    """

    name = "cudagraph"
    summary = "capture the forward as a CUDA graph and replay it (CUDA only)"
    wrapped_reason = (
        "cudagraph cannot capture what compile, cudagraph or pt2e-int8 already wrapped: "
        "for compile with CUDA graphs use compile:reduce-overhead"
    )

    def applies_to(self, device: Device) -> str | None:
        return None if device.is_cuda else "CUDA graphs need an NVIDIA GPU"

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        art = self.require(artifact, TorchArtifact)
        inputs = present_inputs(ctx.example_inputs, ctx.device.torch_name, art.input_dtype, art.channels_last)
        module = _GraphReplay(copy.deepcopy(art.module), inputs)
        return art.evolve(module=module, compiled=True, notes=(*art.notes, "cuda graph replay"))

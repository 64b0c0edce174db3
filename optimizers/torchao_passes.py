"""torchao weight-only and dynamic quantization of ``nn.Linear`` layers: ``int8wo``, ``int4wo[:GROUP]``, ``int8dq``.

The names are those of torchao's own benchmarks (``int8wo``, ``int4wo-128``, ``int8dq``).
Each pass deep-copies the torch module and calls ``torchao.quantization.quantize_`` on the
copy with torchao's default filter, so only ``nn.Linear`` weights change: they become torchao
tensor subclasses (``Int8Tensor``, ``Int4Tensor``) that dispatch ``F.linear`` to torchao's
kernels. Convolutions stay float, so on the conv-heavy reference models only the few Linear
layers (the UNet's time embedding) are quantized; the pass's note says how many and what share
of the parameters that is. A model without any Linear is ``NotApplicable`` (a `skipped` row).

Activations keep the module's dtype (``input_dtype`` is unchanged): ``int8wo`` and ``int4wo``
dequantize weights inside the matmul, ``int8dq`` quantizes activations per call, per token.

Two choices differ from torchao's defaults, on purpose:

* ``set_inductor_config=False``: with the default, ``quantize_`` sets five process-wide
  Inductor options (coordinate-descent tuning among them) and never restores them, so every
  later ``compile`` cell in the process (the fp32 one included) would be compiled differently
  depending on whether a torchao cell ran before it.
* ``int8dq`` sets ``reduce_range`` on a CPU without VNNI, as torchao's ``should_reduce_range``
  advises (u8s8 products overflow there), as ``int8``/``int8-dynamic`` do with onnxruntime.

torchao is imported inside ``apply`` and the availability probe only: it takes seconds to
import and logs about its optional C++ extensions, and ``python -m bench --help`` must not.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from abc import abstractmethod
from typing import Any, ClassVar, Self

import torch
from torch import nn
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from bench.core.artifact import Artifact, TorchArtifact
from bench.core.device import Device
from bench.core.errors import NotApplicable, PipelineError
from bench.core.optional import missing
from bench.core.text import one_line
from optimizers.base import Pass, PassContext, compiled_refusal, register_pass
from optimizers.pruning import human_count
from optimizers.state import ArtifactState

#: the precisions a torchao pass can start from: float weights, not yet quantized
FLOAT_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
#: the group sizes torchao's int4 weight-only kernels take (in_features per scale/zero point)
INT4_GROUP_SIZES: tuple[int, ...] = (32, 64, 128, 256)
DEFAULT_INT4_GROUP = 128
#: the probe's Linear: in_features a multiple of every group size (and of 8, for int8 matmuls);
#: 32 rows, above cuBLAS's 16-row minimum for int8 GEMM
_PROBE_SHAPE = (32, 256, 256)
#: how many names of Linear layers left float a note lists before "..."
_NAMES_SHOWN = 4

#: (pass spec, device) -> None when the pass ran on a tiny Linear there, else why not
_PROBES: dict[tuple[str, str], str | None] = {}


def _import_torchao() -> None:
    """Import torchao with its load-time noise off the console: on a build without its optional CUDA
    extensions it logs a warning per missing library and torch logs a pytree deprecation, once per
    process, which would break genbench's one-line errors and clutter every run's output."""
    if "torchao" in sys.modules:
        return
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        import torchao  # noqa: F401
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def quantized_tensor_bytes(t: torch.Tensor) -> int:
    """The bytes a tensor really stores: a tensor subclass's inner tensors, summed recursively.

    A torchao weight reports the wrapped dtype (an int8 weight of an fp32 Linear says fp32,
    4 bytes per element) while it stores int8 data plus scales; ``numel * element_size``
    would count it 4x. ``__tensor_flatten__`` names the inner tensors of any traceable
    wrapper subclass (optional ones that are None are left out); a plain tensor is
    ``numel * element_size``.
    """
    if is_traceable_wrapper_subclass(t):
        names, _ = t.__tensor_flatten__()
        return sum(quantized_tensor_bytes(getattr(t, name)) for name in names)
    return t.numel() * t.element_size()


def _is_quantized(weight: Any) -> bool:
    return isinstance(weight, torch.Tensor) and is_traceable_wrapper_subclass(weight)


class _TorchaoPass(Pass):
    """Shared by the three: state rules, the per-device probe, ``quantize_`` on a copy, the note."""

    #: the precision the artifact has afterwards
    precision: ClassVar[str]
    #: the float precisions torchao's kernels for this config take
    accepts: ClassVar[tuple[str, ...]] = FLOAT_PRECISIONS
    #: the dtype of the probe's Linear (the one the config needs)
    probe_dtype: ClassVar[torch.dtype] = torch.float32

    @abstractmethod
    def config(self, device: Device) -> Any:
        """The torchao config for ``device`` (imports torchao)."""

    def available(self) -> str | None:
        return missing("torchao")

    def applies_to(self, device: Device) -> str | None:
        """None when torchao is installed and this config quantizes and runs a tiny Linear on ``device``.

        What a config needs is decided deep inside torchao (int4 wants the mslk kernels, which
        no CPU has), so the probe tries it instead of guessing; once per process and device.
        """
        reason = self.available()
        if reason is not None:
            return reason
        key = (self.spec, device.torch_name)
        if key not in _PROBES:
            _PROBES[key] = self._probe(device)
        return _PROBES[key]

    def _probe(self, device: Device) -> str | None:
        _import_torchao()
        from torchao.quantization import quantize_

        rows, features, outputs = _PROBE_SHAPE
        try:
            with torch.no_grad():
                linear = nn.Linear(features, outputs).to(device.torch_name, self.probe_dtype)
                quantize_(linear, self.config(device))
                with torch.inference_mode():
                    linear(torch.ones(rows, features, device=device.torch_name, dtype=self.probe_dtype))
        except Exception as exc:
            return f"torchao {self.name} does not run on {device} ({self.probe_dtype}): {one_line(exc, 240)}"
        return None

    def refuses(self, state: ArtifactState) -> str | None:
        if state.compiled:
            return compiled_refusal(self.name)
        if state.precision not in FLOAT_PRECISIONS:
            return (
                f"{self.name} quantizes float weights and this model is already {state.precision}: "
                "keep one quantization"
            )
        if state.precision not in self.accepts:
            return self.dtype_refusal(state.precision)
        if state.sparse24:
            return f"{self.name} cannot quantize 2:4 semi-structured weights: keep sparse24 or {self.name}"
        return super().refuses(state)

    def dtype_refusal(self, precision: str) -> str:
        return f"{self.name} takes {'/'.join(self.accepts)} weights, not {precision}"

    def after(self, state: ArtifactState) -> ArtifactState:
        return state.evolve(precision=self.precision)

    def left_reason(self, layer: nn.Linear) -> str:
        """Why torchao left this Linear float (for the note)."""
        if isinstance(layer, nn.modules.linear.NonDynamicallyQuantizableLinear):
            return "nn.MultiheadAttention's out_proj"
        return "not converted by torchao"

    def note_extra(self, device: Device) -> str:
        return ""

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        art = self.require(artifact, TorchArtifact)
        if not any(isinstance(m, nn.Linear) for m in art.module.modules()):
            raise NotApplicable(f"{self.name} quantizes nn.Linear weights and this model has no nn.Linear")
        _import_torchao()
        from torchao.quantization import quantize_

        t0 = time.perf_counter()
        module = copy.deepcopy(art.module)
        owners = _parameter_owners(module)
        with torch.no_grad():
            quantize_(module, self.config(ctx.device))
        linears: list[tuple[str, nn.Linear]] = [
            (name, m) for name, m in module.named_modules() if isinstance(m, nn.Linear)
        ]
        done = [(name, m) for name, m in linears if _is_quantized(m.weight)]
        left = [(name, m) for name, m in linears if not _is_quantized(m.weight)]
        if not done:
            raise NotApplicable(
                f"{self.name} left all {len(linears)} nn.Linear layers float: {_describe_left(self, left)}"
            )
        quantized_elements = sum(m.weight.numel() for _, m in done)
        all_elements = sum(p.numel() for p in art.module.parameters())
        share = quantized_elements / all_elements if all_elements else 0.0
        notes = [
            f"torchao {self.name}{self.note_extra(ctx.device)}: quantized {len(done)} of {len(linears)} "
            f"nn.Linear layers ({human_count(quantized_elements)} weights, {share:.1%} of the parameters)"
        ]
        if left:
            notes.append(f"left {len(left)} float: {_describe_left(self, left)}")
        untied = _untied(done, owners)
        if untied:
            notes.append(
                f"untied {len(untied)} shared weight(s) ({'; '.join(untied)}): quantizing a Linear whose "
                "weight is tied to an embedding (or another layer) unties it, the other keeps its float copy"
            )
        notes.append(f"quantize_s={time.perf_counter() - t0:.1f}")
        return art.evolve(module=module, precision=self.precision, notes=(*art.notes, *notes))


def _parameter_owners(module: nn.Module) -> dict[int, list[str]]:
    """id of each parameter -> every qualified name it is reachable by (a tied weight has several)."""
    owners: dict[int, list[str]] = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        owners.setdefault(id(param), []).append(name)
    return owners


def _untied(done: list[tuple[str, nn.Linear]], owners: dict[int, list[str]]) -> list[str]:
    """For each quantized Linear whose float weight was shared: ``lm_head.weight was tied to embed.weight``.

    ``owners`` was taken before ``quantize_``, which gives the Linear a new parameter: the
    other holders of the old one keep the float tensor.
    """
    names_of = {name: names for names in owners.values() for name in names}
    untied = []
    for layer_name, _ in done:
        weight = f"{layer_name}.weight" if layer_name else "weight"
        others = [n for n in names_of.get(weight, []) if n != weight]
        if others:
            untied.append(f"{weight} was tied to {', '.join(others)}")
    return untied


def _describe_left(step: _TorchaoPass, left: list[tuple[str, nn.Linear]]) -> str:
    """``name (why), ...`` for the Linear layers torchao left float, the first few of them."""
    shown = [f"{name or 'the module'} ({step.left_reason(layer)})" for name, layer in left[:_NAMES_SHOWN]]
    return ", ".join(shown) + (", ..." if len(left) > _NAMES_SHOWN else "")


#: why int8wo and int8dq stay out of the CPU default matrix (asked for by name they run), measured: gpt small,
#: 32 + 32 tokens, 2-core AVX-512 VNNI EPYC, results/cpu-gen-gpt-20261202: int8wo 0.41x/0.54x and int8dq
#: 0.46x/0.63x of fp32 eager's output tokens/s at batch 1/8 (bf16 alone 2.03x/2.59x)
CPU_EXCLUSION = "torchao's int8 kernels run slower than fp32 eager on CPU (0.4-0.6x measured for gpt small)"


@register_pass
class Int8WeightOnly(_TorchaoPass):
    """int8 weight-only (torchao ``Int8WeightOnlyConfig``): per-row symmetric int8 weights.

    The matmul runs in the activations' dtype on the weight cast back from int8 (eager
    torch.mm on ``qdata.to(dtype)`` times the row scales): it saves weight memory (about 4x
    from fp32, 2x from bf16/fp16) but in eager mode it does the cast on every call, so
    expect it to be slower than float there; torchao's speedups come with torch.compile
    after it (``int8wo+compile``), where the cast fuses into the GEMM. Takes fp32, bf16 and
    fp16 models (checked on CPU: all three run, cosine > 0.9999 against float).
    """

    name = "int8wo"
    summary = "torchao int8 weight-only Linear quantization (activations stay float)"
    precision = "int8-wo"

    def default_exclusion(self, device: Device) -> str | None:
        return None if device.is_cuda else CPU_EXCLUSION

    def config(self, device: Device) -> Any:
        _import_torchao()
        from torchao.quantization import Int8WeightOnlyConfig

        return Int8WeightOnlyConfig(set_inductor_config=False)


@register_pass
class Int8DynamicActivation(_TorchaoPass):
    """int8 dynamic activations + int8 weights (torchao ``Int8DynamicActivationInt8WeightConfig``).

    Weights per-row symmetric int8 ahead of time; activations quantized per token on every
    call, then an int8 x int8 -> int32 GEMM (``torch._int_mm``) rescaled to the activation
    dtype. On CUDA, a Linear whose in_features or out_features is not a multiple of 8 makes
    torchao fall back to an int32 matmul on the CPU (its ``safe_int_mm``), which is slow:
    look at the model's shapes before reading a bad row as int8's fault. Takes fp32, bf16
    and fp16 models. ``reduce_range`` on a CPU without VNNI (see the module docstring).
    """

    name = "int8dq"
    summary = "torchao int8 dynamic-activation + int8-weight Linear quantization"
    precision = "int8-dq"

    def default_exclusion(self, device: Device) -> str | None:
        return None if device.is_cuda else CPU_EXCLUSION

    def config(self, device: Device) -> Any:
        _import_torchao()
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig
        from torchao.utils import should_reduce_range

        return Int8DynamicActivationInt8WeightConfig(
            set_inductor_config=False, reduce_range=should_reduce_range(torch.device(device.torch_name))
        )

    def note_extra(self, device: Device) -> str:
        _import_torchao()
        from torchao.utils import should_reduce_range

        return " (reduce_range)" if should_reduce_range(torch.device(device.torch_name)) else ""


@register_pass
class Int4WeightOnly(_TorchaoPass):
    """int4 weight-only, grouped (torchao ``Int4WeightOnlyConfig(group_size=GROUP)``), GROUP in 32/64/128/256.

    What torchao 0.18 needs for it (read from its source; no GPU was at hand to run it):

    * weights and activations in bf16: the kernels are bf16 x int4 -> bf16 only, so the pass
      takes a bf16 model (``bf16+int4wo``) and refuses fp32/fp16 when the pipeline is parsed;
    * the default config (``version=2``, ``int4_packing_format="plain"``) builds ``Int4Tensor``,
      which quantizes with ``mslk.quantize.shuffle`` and multiplies with
      ``torch.ops.mslk.bf16i4bf16_rowwise``, MSLK's CUTLASS kernel: CUDA only, and it needs
      ``pip install mslk`` (>= 1.0.0); without it, quantizing raises
      ``ImportError: Requires mslk >= 1.0.0``, which is what this CPU says (no CPU kernel at all);
    * torchao's other CUDA route, ``int4_packing_format="tile_packed_to_4d"`` (the tinygemm
      kernel, ``aten._weight_int4pack_mm`` in core torch), needs no mslk but a GPU of compute
      capability >= 8.0; it is not used here, so the row measures torchao's default.

    A Linear whose in_features is not a multiple of GROUP is left float by torchao (counted in
    the note). ``applies_to`` tries the config on a tiny bf16 Linear on the device, once per
    process, so a missing kernel is a `skipped` row with torchao's own reason.
    """

    name = "int4wo"
    summary = "torchao int4 weight-only grouped Linear quantization (bf16, CUDA + mslk); int4wo:GROUP"
    precision = "int4-wo"
    accepts = ("bf16",)
    probe_dtype = torch.bfloat16
    argument = "group_size"

    def __init__(self, *, group_size: int | None = None) -> None:
        if group_size is not None and (
            isinstance(group_size, bool)
            or not isinstance(group_size, int)
            or group_size not in INT4_GROUP_SIZES
        ):
            raise PipelineError(self._group_error(group_size))
        self.group_size: int = DEFAULT_INT4_GROUP if group_size is None else group_size
        self.arg = None if group_size is None else str(group_size)

    @classmethod
    def _group_error(cls, given: object) -> str:
        return (
            f"int4wo group size must be one of {', '.join(map(str, INT4_GROUP_SIZES))}, "
            f"e.g. int4wo:{DEFAULT_INT4_GROUP} (got {given!r})"
        )

    @classmethod
    def from_arg(cls, arg: str | None) -> Self:
        if arg is None:
            return cls()
        try:
            group_size = int(arg)
        except ValueError:
            raise PipelineError(cls._group_error(arg)) from None
        return cls(group_size=group_size)

    def dtype_refusal(self, precision: str) -> str:
        return f"int4wo needs bf16 weights and activations (torchao's int4 kernels are bf16-only): put bf16 first (bf16+{self.spec})"

    def left_reason(self, layer: nn.Linear) -> str:
        if layer.in_features % self.group_size:
            return f"in_features {layer.in_features} not a multiple of {self.group_size}"
        return super().left_reason(layer)

    def note_extra(self, device: Device) -> str:
        return f" group_size={self.group_size}"

    def config(self, device: Device) -> Any:
        _import_torchao()
        from torchao.quantization import Int4WeightOnlyConfig

        return Int4WeightOnlyConfig(group_size=self.group_size, set_inductor_config=False)

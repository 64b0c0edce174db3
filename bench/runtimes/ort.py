"""Run an ONNX artifact with ONNX Runtime on the CPU, CUDA or TensorRT execution provider.

onnxruntime is imported inside :class:`OrtRuntime`, never at module import, so
``import bench`` stays light and a missing onnxruntime only fails the cells
that need it.

What is timed: ``run`` is one ``InferenceSession.run`` call. On the CPU EP the
inputs are numpy arrays already in the model's declared dtypes (``prepare``
casts them once, untimed). On the CUDA/TensorRT EPs the inputs are torch CUDA
tensors bound with IO binding, so no host<->device copy is inside the timed call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.core.artifact import OnnxArtifact
from bench.core.device import Device
from bench.core.onnx_names import input_positions
from bench.core.optional import missing
from bench.runtimes.base import register_runtime

#: the pass/artifact short name of a provider -> onnxruntime's execution-provider name
PROVIDERS: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}

#: ONNX tensor type strings (as InferenceSession reports them) -> numpy dtypes
_NUMPY_TYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}

_TORCH_TYPES: dict[str, torch.dtype] = {
    "tensor(float)": torch.float32,
    "tensor(float16)": torch.float16,
    "tensor(bfloat16)": torch.bfloat16,
    "tensor(double)": torch.float64,
    "tensor(int64)": torch.int64,
    "tensor(int32)": torch.int32,
    "tensor(int16)": torch.int16,
    "tensor(int8)": torch.int8,
    "tensor(uint8)": torch.uint8,
    "tensor(bool)": torch.bool,
}


def default_provider(device: Device) -> str:
    """The execution provider a device runs ONNX models on unless told otherwise."""
    return "cuda" if device.is_cuda else "cpu"


def check_provider(name: str) -> str:
    """``name`` if it is a provider short name, else ValueError listing them."""
    if name not in PROVIDERS:
        raise ValueError(f"unknown onnxruntime provider {name!r}; choose from {', '.join(PROVIDERS)}")
    return name


def provider_for(artifact: OnnxArtifact, device: Device) -> str:
    """The short provider name to use: the artifact's choice, else the device's natural one."""
    return check_provider(artifact.provider) if artifact.provider is not None else default_provider(device)


def provider_unavailable(provider: str | None, device: Device) -> str | None:
    """Why onnxruntime cannot run ``provider`` (None: the device's default) here; None when it can.

    The only place that decides which execution providers exist: the ``ort`` pass and
    the harness's skip check ask this, so a run never starts a cell whose provider is
    missing (onnxruntime would silently fall back to the CPU).
    """
    reason = missing("onnxruntime")
    name = check_provider(provider) if provider is not None else default_provider(device)
    if reason is not None or name == "cpu":
        return reason
    if not device.is_cuda:
        return f"ort:{name} needs a CUDA device (this run is on {device})"
    import onnxruntime as ort  # only here: asking which EPs this build has means importing it

    ep = PROVIDERS[name]
    if ep not in ort.get_available_providers():
        return f"onnxruntime {ort.__version__} has no {ep} (install onnxruntime-gpu)"
    return None


#: session config entries that keep onnxruntime's pool threads from spinning once a call is done
NO_SPINNING: dict[str, str] = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}


def session_options(ort: Any, spinning: bool = False) -> Any:
    """The session options genbench's ONNX Runtime sessions get.

    - intra-op threads: torch's thread count, which the worker set from ``--threads`` (every
      runtime of a run uses the same cores), not onnxruntime's own default of one per core.
    - spinning: onnxruntime's pool threads busy-wait after each call for more work. Measured on
      the 2-core Xeon (AMX, onnxruntime 1.32, UNet small b8, back-to-back calls, quiet): spinning
      off cost onnxruntime 10% (fp32 112.9 vs 101.3 ms, int8 QDQ 86.4 vs 78.0 ms). So it is off
      only where the cores are shared while the model runs: a server load's load generator and
      batcher run beside it (``OnnxArtifact.spinning``), and ``bench peak``'s int8 GEMM leaves it
      off as the caller's default. A cell is its own worker process, so spinning threads never
      outlive it into the next cell.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only: ORT's warnings (unused initializers...) are noise here
    if not spinning:
        for key, value in NO_SPINNING.items():
            options.add_session_config_entry(key, value)
    return options


@dataclass(frozen=True)
class _Input:
    name: str
    position: int  # which of the model's positional inputs feeds it
    type: str  # ONNX type string, e.g. "tensor(float)"


@register_runtime("onnx")
class OrtRuntime:
    """One onnxruntime session for one artifact; see the module docstring for what is timed."""

    allocates_through_torch = False

    @staticmethod
    def unavailable(device: Device) -> str | None:
        """Why the device's default execution provider cannot run here (None: it can)."""
        return provider_unavailable(None, device)

    def __init__(self, artifact: OnnxArtifact, device: Device) -> None:
        self.artifact = artifact
        self.device = device
        self.provider = provider_for(artifact, device)
        unavailable = provider_unavailable(self.provider, device)
        if unavailable is not None:
            raise RuntimeError(f"ONNX artifacts run on onnxruntime: {unavailable}")
        import onnxruntime as ort

        ep = PROVIDERS[self.provider]
        self.options = session_options(ort, spinning=artifact.spinning)
        self.session = ort.InferenceSession(str(artifact.path), self.options, providers=self._providers(ep))
        active = self.session.get_providers()[0]
        if active != ep:  # onnxruntime silently falls back to the CPU when an EP fails to load
            raise RuntimeError(f"onnxruntime did not start {ep} (the session runs on {active})")
        self.runtime_name = f"onnxruntime:{active}"
        names = [i.name for i in self.session.get_inputs()]
        self.inputs = [
            _Input(i.name, pos, i.type)
            for i, pos in zip(self.session.get_inputs(), input_positions(names), strict=True)
        ]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._binding: Any = None

    def _providers(self, ep: str) -> list[Any]:
        index = self.device.index or 0
        if ep == "CPUExecutionProvider":
            return [ep]
        chain: list[Any] = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        if ep == "TensorrtExecutionProvider":
            chain.insert(0, (ep, {"device_id": index}))
        return chain

    @property
    def on_device(self) -> bool:
        return self.provider != "cpu"

    # ------------------------------------------------------------------ prepare
    def prepare(self, inputs: tuple[torch.Tensor, ...]) -> Any:
        """Inputs in the model's declared dtypes: numpy on the CPU EP, bound CUDA tensors otherwise."""
        if len(inputs) < max((i.position for i in self.inputs), default=-1) + 1:
            raise ValueError(f"the ONNX model wants {len(self.inputs)} inputs, got {len(inputs)}")
        if self.on_device:
            return self._bind(inputs)
        feed: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            dtype = _NUMPY_TYPES.get(spec.type)
            if dtype is None:
                raise TypeError(f"input {spec.name!r} has type {spec.type}, which numpy cannot feed")
            feed[spec.name] = np.ascontiguousarray(
                inputs[spec.position].detach().cpu().numpy().astype(dtype, copy=False)
            )
        return feed

    def _bind(self, inputs: tuple[torch.Tensor, ...]) -> tuple[Any, list[torch.Tensor]]:
        """CUDA/TensorRT EP only (not exercised by the CPU test suite): bind device tensors with IO binding.

        Inputs become contiguous CUDA tensors in the declared dtype, bound by
        pointer (``bind_input`` with ``buffer_ptr``); outputs are bound to the
        device and allocated by onnxruntime. The tensors are returned with the
        binding so they stay alive as long as it does.
        """
        binding = self.session.io_binding()
        index = self.device.index or 0
        kept: list[torch.Tensor] = []
        for spec in self.inputs:
            dtype = _TORCH_TYPES.get(spec.type)
            if dtype is None:
                raise TypeError(f"input {spec.name!r} has type {spec.type}, which cannot be bound from torch")
            tensor = inputs[spec.position].to(self.device.torch_name, dtype).contiguous()
            kept.append(tensor)
            binding.bind_input(
                name=spec.name,
                device_type="cuda",
                device_id=index,
                element_type=_numpy_element_type(dtype),
                shape=tuple(tensor.shape),
                buffer_ptr=tensor.data_ptr(),
            )
        for name in self.output_names:
            binding.bind_output(name, "cuda", index)
        # onnxruntime's CUDA provider runs on a stream of its own and does not wait for
        # torch's: the input copies and casts above must be finished before it reads them.
        torch.cuda.current_stream(self.device.torch_name).synchronize()
        return binding, kept

    # ------------------------------------------------------------------ run
    def run(self, prepared: Any) -> Any:
        if self.on_device:  # CUDA/TensorRT EP path (IO binding); untested on CPU-only machines
            binding, _ = prepared
            self.session.run_with_iobinding(binding)
            return binding.get_outputs()
        return self.session.run(None, prepared)

    def to_torch(self, output: Any) -> torch.Tensor:
        """The first output as an fp32 CPU tensor (a device OrtValue is copied to the host here, untimed)."""
        first = output[0]
        array = first if isinstance(first, np.ndarray) else first.numpy()
        return torch.from_numpy(np.asarray(array)).float()


def _numpy_element_type(dtype: torch.dtype) -> Any:
    """The numpy type IO binding's ``element_type`` wants for a torch dtype (bf16 has none in numpy)."""
    mapping: dict[torch.dtype, Any] = {
        torch.float32: np.float32,
        torch.float16: np.float16,
        torch.float64: np.float64,
        torch.int64: np.int64,
        torch.int32: np.int32,
        torch.int16: np.int16,
        torch.int8: np.int8,
        torch.uint8: np.uint8,
        torch.bool: np.bool_,
    }
    if dtype not in mapping:
        raise TypeError(f"cannot bind a {dtype} tensor with onnxruntime IO binding")
    return mapping[dtype]

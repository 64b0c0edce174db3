"""Run an OpenVINO IR with OpenVINO's CPU plugin: one compiled model per input shape, hints recorded.

openvino is imported inside :class:`OpenVinoRuntime`, never at module import.

How it is configured, and why:

- Static shapes. The IR converted from torch has free batch and spatial axes; the
  plugin compiled for the exact input shape ran the UNet small at batch 8 in 102 ms
  against 133 ms for the same IR compiled dynamic (f32; 40 vs 57 ms int8; 2-core
  Xeon with AMX, openvino 2026.4). So each input shape gets a model reshaped to it and
  compiled, once, in ``prepare`` (untimed; in a server load a batch size first seen
  compiles there, which the load's warm-up mostly absorbs).
- ``INFERENCE_PRECISION_HINT`` is always set (``f32`` unless the artifact asks for
  ``bf16``): the plugin's default is bf16 on CPUs with AVX512-BF16 or AMX.
- ``INFERENCE_NUM_THREADS`` is torch's thread count, which the worker set from
  ``--threads``, so OpenVINO uses the cores the run gave every runtime.
- ``PERFORMANCE_HINT``: ``LATENCY`` (one stream, one request) for single-stream and
  server cells; ``THROUGHPUT`` for offline cells, where the batch is split over the
  plugin's optimal number of infer requests, run at once on its streams (what
  OpenVINO's benchmark_app does); a batch that does not split evenly runs as one
  request. The streams, threads and requests it chose are in ``notes``.

What is timed: ``run`` is one synchronous ``infer`` (or the requests started and
waited for), on numpy inputs already in the model's element types, shared with the
request rather than copied; outputs are copied out, as onnxruntime returns new arrays.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.core.artifact import OpenVinoArtifact
from bench.core.device import Device
from bench.core.errors import NotApplicable
from bench.core.onnx_names import input_positions
from bench.core.optional import missing
from bench.runtimes.base import register_runtime

HINTS: tuple[str, ...] = ("LATENCY", "THROUGHPUT")
INFERENCE_PRECISIONS: tuple[str, ...] = ("f32", "bf16")


def openvino_unavailable(device: Device) -> str | None:
    """Why OpenVINO cannot run on ``device`` here (None: it can)."""
    if device.is_cuda:
        return "genbench runs OpenVINO on its CPU plugin only (its GPU plugin is for Intel GPUs)"
    return missing("openvino")


def feed_positions(model: Any) -> list[int]:
    """The positional model input feeding each of an OpenVINO model's inputs.

    An IR converted from torch names its inputs after ``forward``'s arguments, in their order;
    one converted from genbench's ONNX keeps ``input_N``, mapped by number (the exporter may
    drop an unused input).
    """
    names = []
    for port in model.inputs:
        try:
            names.append(port.get_any_name())
        except RuntimeError:  # an unnamed port: positions in order
            names.append("")
    return input_positions(names)


def numpy_inputs(model: Any, inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    """``inputs`` as contiguous numpy arrays in the element types of ``model``'s inputs, in its order."""
    positions = feed_positions(model)
    if len(inputs) < max(positions, default=-1) + 1:
        raise ValueError(f"the OpenVINO model wants {len(positions)} inputs, got {len(inputs)}")
    return [
        np.ascontiguousarray(
            inputs[pos].detach().cpu().numpy().astype(port.get_element_type().to_dtype(), copy=False)
        )
        for port, pos in zip(model.inputs, positions, strict=True)
    ]


@dataclass
class _Compiled:
    """One shape's compiled model and the requests a call runs on."""

    model: Any
    requests: list[Any]


@dataclass(frozen=True)
class _Prepared:
    """A call's inputs, one feed per request (several only under the throughput hint)."""

    compiled: _Compiled
    feeds: tuple[list[np.ndarray], ...]


#: the plugin's layer types that carry the weights (and so most of the work) of these models
WEIGHTED_LAYERS: tuple[str, ...] = ("Convolution", "Deconvolution", "FullyConnected", "MatMul")


def executed_precisions(compiled: Any) -> str:
    """``Convolution=i8:62 Deconvolution=u8:4,i8:1``: the precision each weighted layer of the compiled
    model runs in, read from the plugin's runtime model. What NNCF quantized is not always what runs in
    int8: this is what does (the DCGAN's ConvTranspose layers run as u8/i8 Deconvolution on the CPU plugin,
    where onnxruntime's CPU EP has no int8 ConvTranspose kernel)."""
    counts: dict[str, Counter[str]] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str)
        if layer in WEIGHTED_LAYERS:
            counts.setdefault(layer, Counter())[info["runtimePrecision"].astype(str)] += 1
    return (
        " ".join(
            f"{layer}=" + ",".join(f"{p}:{n}" for p, n in sorted(by.items()))
            for layer, by in sorted(counts.items())
        )
        or "none"
    )


@register_runtime("openvino")
class OpenVinoRuntime:
    """One OpenVINO Core and IR for one artifact; see the module docstring for the configuration."""

    allocates_through_torch = False

    @staticmethod
    def unavailable(device: Device) -> str | None:
        return openvino_unavailable(device)

    def __init__(self, artifact: OpenVinoArtifact, device: Device) -> None:
        reason = openvino_unavailable(device)
        if reason is not None:
            raise RuntimeError(f"OpenVINO artifacts run on OpenVINO: {reason}")
        if artifact.performance_hint not in HINTS:
            raise ValueError(f"unknown OpenVINO performance hint {artifact.performance_hint!r}")
        if artifact.inference_precision not in INFERENCE_PRECISIONS:
            raise ValueError(f"unknown OpenVINO inference precision {artifact.inference_precision!r}")
        import openvino as ov

        self.artifact = artifact
        self.core = ov.Core()
        if artifact.inference_precision == "bf16" and "BF16" not in self.core.get_property(
            "CPU", "OPTIMIZATION_CAPABILITIES"
        ):
            raise NotApplicable(
                "openvino:bf16: this CPU has no native bf16 (OpenVINO's CPU plugin would run f32 and the row "
                "would be labelled bf16)"
            )
        self.model = self.core.read_model(str(artifact.path))
        #: what every compile gets; the hint is each compile's own (``_compile``)
        self.config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": artifact.inference_precision,
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        }
        self.runtime_name = f"openvino:CPU:{artifact.performance_hint.lower()}"
        #: (input shapes, hint, fixed stream count) -> its compiled model and requests
        self._compiled: dict[tuple[tuple[tuple[int, ...], ...], str, int | None], _Compiled] = {}
        self.notes: tuple[str, ...] = ()

    def _compile(
        self, shapes: tuple[tuple[int, ...], ...], hint: str, streams: int | None = None
    ) -> _Compiled:
        """The model compiled for these input shapes under ``hint`` (once per shape, hint and stream count).

        ``streams`` fixes the stream count (and so the requests) of a throughput compile whose batch is
        split; otherwise the plugin chooses.
        """
        key = (shapes, hint, streams)
        found = self._compiled.get(key)
        if found is not None:
            return found
        import openvino as ov

        model = self.model.clone()
        model.reshape(
            {port: ov.PartialShape(list(shape)) for port, shape in zip(model.inputs, shapes, strict=True)}
        )
        config = {**self.config, "PERFORMANCE_HINT": hint, **({"NUM_STREAMS": streams} if streams else {})}
        compiled = self.core.compile_model(model, "CPU", config)
        got = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if got != self.artifact.inference_precision:
            raise NotApplicable(
                f"OpenVINO's CPU plugin computes this model in {got}, not the {self.artifact.inference_precision} "
                "asked for (no native bf16 here): the row would not measure what it is labelled"
            )
        count = 1
        if hint == "THROUGHPUT":
            count = streams or max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        entry = _Compiled(compiled, [compiled.create_infer_request() for _ in range(count)])
        self._compiled[key] = entry
        return entry

    def prepare(self, inputs: tuple[torch.Tensor, ...]) -> _Prepared:
        """Inputs as numpy in the model's types; under the throughput hint, split over the requests.

        A throughput compile of the whole batch says how many requests the plugin would run at once;
        a batch that splits evenly into that many runs as that many requests on as many streams, one
        that does not runs as one request on one stream with every thread (the latency hint), and
        the notes say which ran.
        """
        arrays = numpy_inputs(self.model, inputs)
        whole = tuple(tuple(a.shape) for a in arrays)
        prepared: _Prepared | None = None
        how = "LATENCY"
        if self.artifact.performance_hint == "THROUGHPUT":
            parts = len(self._compile(whole, "THROUGHPUT").requests)
            batch = arrays[0].shape[0] if arrays and arrays[0].ndim else 1
            if parts > 1 and batch % parts == 0 and all(a.ndim and a.shape[0] == batch for a in arrays):
                chunks = [np.split(a, parts) for a in arrays]
                feeds = tuple([np.ascontiguousarray(c[i]) for c in chunks] for i in range(parts))
                chunk = tuple(tuple(a.shape) for a in feeds[0])
                prepared, how = _Prepared(self._compile(chunk, "THROUGHPUT", parts), feeds), "THROUGHPUT"
            else:
                how = f"THROUGHPUT->LATENCY (batch {batch} does not split over {parts} requests)"
        if prepared is None:
            prepared = _Prepared(self._compile(whole, "LATENCY"), (arrays,))
        if not self.notes:  # the first input's (the cell's own batch): what the row reports
            compiled = prepared.compiled.model
            self.notes = (
                f"openvino hint={how} streams={compiled.get_property('NUM_STREAMS')} "
                f"threads={compiled.get_property('INFERENCE_NUM_THREADS')} requests={len(prepared.feeds)} "
                f"inference_precision={compiled.get_property('INFERENCE_PRECISION_HINT').get_type_name()} "
                f"executed {executed_precisions(compiled)}",
            )
        return prepared

    def run(self, prepared: _Prepared) -> list[list[np.ndarray]]:
        requests = prepared.compiled.requests
        if len(prepared.feeds) == 1:
            result = requests[0].infer(prepared.feeds[0], share_inputs=True)
            return [list(result.to_tuple())]
        for request, feed in zip(requests, prepared.feeds, strict=True):
            request.start_async(feed, share_inputs=True)
        outputs = []
        for request in requests:
            request.wait()
            outputs.append([t.data.copy() for t in request.output_tensors])
        return outputs

    def to_torch(self, output: list[list[np.ndarray]]) -> torch.Tensor:
        """The first output as an fp32 CPU tensor (the parts of a split batch put back together)."""
        first = [np.asarray(part[0]) for part in output]
        array = first[0] if len(first) == 1 else np.concatenate(first)
        return torch.from_numpy(np.ascontiguousarray(array)).float()

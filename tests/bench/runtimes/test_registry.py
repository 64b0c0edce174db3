"""Runtimes are plugins: registered by artifact kind, looked up by the artifact a pipeline ends in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from bench.core.device import Device
from bench.runtimes import RUNTIMES, all_runtimes, load, register_runtime, runtime_unavailable


def test_every_built_in_artifact_kind_has_a_runtime() -> None:
    assert {"torch", "onnx", "tensorrt"} <= set(all_runtimes())


@dataclass(frozen=True)
class _ToyArtifact:
    scale: float
    precision: str = "fp32"
    notes: tuple[str, ...] = ()
    kind: str = field(default="toy-kind", init=False)


def test_a_third_party_runtime_registers_for_its_kind_and_runs_its_artifacts() -> None:
    @register_runtime("toy-kind")
    class ToyRuntime:
        runtime_name = "toy"
        allocates_through_torch = True

        def __init__(self, artifact: _ToyArtifact, device: Device) -> None:
            self.scale = artifact.scale

        @staticmethod
        def unavailable(device: Device) -> str | None:
            return None if device.kind == "cpu" else "the toy runs on CPUs only"

        def prepare(self, inputs: tuple[torch.Tensor, ...]) -> Any:
            return inputs

        def run(self, prepared: Any) -> Any:
            return prepared[0] * self.scale

        def to_torch(self, output: Any) -> torch.Tensor:
            return output

    try:
        runtime = load(_ToyArtifact(scale=2.0), Device("cpu"))
        assert runtime.to_torch(runtime.run(runtime.prepare((torch.ones(2),)))).tolist() == [2.0, 2.0]
        assert runtime_unavailable("toy-kind", Device("cpu")) is None
        assert runtime_unavailable("toy-kind", Device("cuda", 0)) == "the toy runs on CPUs only"
        with pytest.raises(ValueError, match="already runs on"):
            register_runtime("toy-kind")(type("Other", (), {}))
    finally:
        RUNTIMES.pop("toy-kind", None)


def test_an_artifact_kind_without_a_runtime_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no runtime is registered for artifact kind 'toy-kind'"):
        load(_ToyArtifact(scale=1.0), Device("cpu"))
    assert runtime_unavailable("toy-kind", Device("cpu")) == "no runtime is registered for toy-kind artifacts"

"""The options every onnxruntime session gets: the run's threads, spinning off in a server (read back)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")

from bench.core.artifact import TorchArtifact  # noqa: E402
from bench.core.device import Device  # noqa: E402
from bench.runtimes import load  # noqa: E402
from bench.runtimes.ort import NO_SPINNING  # noqa: E402
from optimizers.registry import parse_pipeline  # noqa: E402
from reference_models import get_model  # noqa: E402
from tests.conftest import pass_context  # noqa: E402


@pytest.mark.parametrize(
    ("scenario", "spins"), [("single-stream", True), ("offline", True), ("server", False)]
)
def test_session_uses_the_runs_threads_and_spins_only_where_nothing_shares_the_cores(
    scenario: str, spins: bool, tmp_path: Path
) -> None:
    spec = get_model("dcgan")
    inputs = spec.example_inputs(2, "tiny", 0)
    art = TorchArtifact(module=spec.build("tiny"))
    ctx = dataclasses.replace(pass_context(inputs, tmp_path), scenario=scenario)
    for step in parse_pipeline("ort").passes:
        art = step.apply(art, ctx)
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runtime = load(art, Device("cpu"))
    finally:
        torch.set_num_threads(saved)
    options = runtime.session.get_session_options()
    assert options.intra_op_num_threads == 1
    for key, value in NO_SPINNING.items():
        if spins:
            with pytest.raises(RuntimeError, match="does not have configuration"):
                options.get_session_config_entry(key)  # unset: onnxruntime's default, spinning
        else:
            assert options.get_session_config_entry(key) == value == "0"
    assert runtime.to_torch(runtime.run(runtime.prepare(inputs))).shape == (2, 3, 16, 16)

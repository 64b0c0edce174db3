"""Shared fixtures: a fast sampling config and a runner over tiny models on CPU."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.config import RunConfig
from bench.devices import Device, parse_device
from bench.results import ResultWriter
from bench.runner import Runner, plan_cells
from optimizers.registry import PassContext

CPU = Device("cpu")
FAST = {"time_budget_s": 0.2, "min_samples": 3, "warmup_s": 0.0, "size": "tiny"}


@pytest.fixture
def run_matrix(tmp_path: Path) -> Callable[..., pd.DataFrame]:
    """Run a matrix on CPU with tiny models and a short budget; return the cells table."""

    def run(**config: object) -> pd.DataFrame:
        from bench.catalog import resolve_models, resolve_pipelines

        cfg = RunConfig(**{**FAST, **config})  # type: ignore[arg-type]
        device = parse_device(cfg.device) if cfg.device else Device("cpu")
        writer = ResultWriter(tmp_path / "run")
        specs = resolve_models(cfg.models, cfg.custom_models)
        pipelines = resolve_pipelines(cfg.pipelines, device)
        Runner(cfg, device, writer, run_id="test").run(
            plan_cells(specs, cfg.size, pipelines, cfg.batch_sizes)
        )
        return writer.frame()

    return run


def pass_context(
    inputs: tuple[torch.Tensor, ...],
    workdir: Path = Path("."),
    device: Device = CPU,
    calibration: Callable[[int], Iterator[tuple[torch.Tensor, ...]]] | None = None,
) -> PassContext:
    """What the runner hands a pass, for tests that apply passes directly: batch size from the inputs,
    no calibration data unless given."""
    return PassContext(
        device=device,
        example_inputs=inputs,
        calibration=calibration or (lambda n: iter(())),
        workdir=workdir,
        batch_sizes=(int(inputs[0].shape[0]),),
    )

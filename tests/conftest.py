"""Shared fixtures: a fast sampling config and a runner over tiny models on CPU."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.core.artifact import Artifact
from bench.core.device import Device, parse_device
from bench.harness.config import RunConfig
from bench.harness.runner import Runner, plan_cells
from bench.results.writer import ResultWriter
from optimizers.registry import PASSES, Pass, PassContext, register_pass

CPU = Device("cpu")
FAST = {"time_budget_s": 0.2, "min_samples": 3, "warmup_s": 0.0, "size": "tiny", "isolation": "none"}


@pytest.fixture(autouse=True)
def _private_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or write the user's cache: a measured peak there would change pct_of_peak,
    a cached TensorRT engine would skip the build under test."""
    monkeypatch.setenv("GENBENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "genbench-cache"))


@pytest.fixture
def run_matrix(tmp_path: Path) -> Callable[..., pd.DataFrame]:
    """Run a matrix on CPU with tiny models and a short budget; return the cells table."""

    def run(**config: object) -> pd.DataFrame:
        from bench.harness.plan import resolve_models, resolve_pipelines

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


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(section: str, language: str) -> str:
    """The first ```language block under the README heading ``section`` (e.g. "## Write your own pass").

    The README's plugin examples are tested files: a missing section or block fails the test rather than
    skipping it, since the README is in the repository.
    """
    text = README.read_text()
    heading = re.search(rf"^{re.escape(section)}$", text, re.MULTILINE)
    if heading is None:
        pytest.fail(f"README.md has no {section!r} section")
    body = text[heading.end() :].split("\n## ", 1)[0]
    match = re.search(rf"^```{language}\n(.*?)^```$", body, re.DOTALL | re.MULTILINE)
    if match is None:
        pytest.fail(f"README.md's {section!r} section has no ```{language} block")
    return match.group(1)


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


class _Boom(Pass):
    name = "test-boom"
    summary = "raises, to test error rows"

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        raise RuntimeError("kaboom in a pass\nsecond line is dropped")


class _Hog(Pass):
    name = "test-hog"
    summary = "asks the allocator for a petabyte, to test oom rows"

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        torch.empty(2**50, dtype=torch.uint8, device=ctx.device.torch_name)
        return artifact


class _Interrupt(Pass):
    name = "test-interrupt"
    summary = "acts as Ctrl-C, to test that finished rows survive"

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        raise KeyboardInterrupt


@pytest.fixture
def test_passes() -> Iterator[None]:
    """Registers passes that fail on purpose: an exception, an impossible allocation, a Ctrl-C."""
    register_pass(_Boom)
    register_pass(_Hog)
    register_pass(_Interrupt)
    yield
    for name in ("test-boom", "test-hog", "test-interrupt"):
        PASSES.pop(name, None)


@pytest.fixture
def cached_cpu_peak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The committed runs' CPU ("AMD EPYC") has no catalogue entry: a cached peak for it, so nothing is measured."""
    from bench.hardware import peak

    monkeypatch.setenv("GENBENCH_CACHE_DIR", str(tmp_path / "cache"))
    peak.write_cache(
        peak.PeakResult(
            device="cpu",
            device_name="AMD EPYC",
            kind="cpu",
            measured_at="2026-11-23T00:00:00+00:00",
            torch_version="test",
            threads=2,
            memory_bytes=24 * 2**30,
            flops={"fp32": 1.2e11, "bf16": 1e9},
            skipped={"int8": "no CPU int8 GEMM"},
            copy_bytes_s=1.5e10,
        )  # fmt: skip
    )

"""The sample workload: the timed sampling loop with recording networks, then ldm tiny cells on CPU."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.core.device import Device
from bench.harness import sample as sample_module
from bench.harness.config import RunConfig
from bench.harness.plan import plan_cells, resolve_models, resolve_pipelines
from bench.harness.runner import Runner
from bench.harness.sample import Network, sample
from bench.measure.diffusion import MARKS_PER_STEP, SamplingRun
from bench.measure.step_clock import HostStepClock
from bench.results.store import read_cells, read_samples
from bench.results.writer import ResultWriter
from bench.runtimes import LoadedModel
from reference_models import ldm
from reference_models.samplers import make_sampler
from reference_models.samplers import sample as reference_sample
from tests.bench.measure.fakes import FakeClock
from tests.conftest import FAST

STEPS = 2
SAMPLE = {**FAST, "steps": STEPS, "time_budget_s": 0.1, "min_samples": 2}


class RecordingNet:
    """A network call that records its inputs and spends ``ms`` of the fake clock."""

    def __init__(self, clock: FakeClock, ms: float, fn: Callable[..., torch.Tensor]) -> None:
        self.clock = clock
        self.ms = ms
        self.fn = fn
        self.inputs: list[tuple[torch.Tensor, ...]] = []

    def __call__(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        self.inputs.append(tuple(t.clone() for t in inputs))
        self.clock.advance(self.ms / 1e3)
        return self.fn(*inputs)


def run_recorded(
    guidance: float, batch: int = 3
) -> tuple[RecordingNet, RecordingNet, list[float], torch.Tensor]:
    model = ldm.build("tiny")
    clock = FakeClock()
    unet = RecordingNet(clock, 10.0, model.unet)
    vae = RecordingNet(clock, 15.0, model.vae)
    noise, labels = ldm.example_inputs(batch, "tiny", seed=0)
    sampler = make_sampler("ddim", model.alphas_cumprod(), STEPS)
    steps = HostStepClock(clock=clock)
    image = sample(
        unet, vae, noise, labels, sampler, guidance, model.null_class, model.config.scale_factor, steps
    )
    return unet, vae, steps.times_ms(), image


@pytest.mark.parametrize(("guidance", "unet_batch"), [(7.5, 6), (1.0, 3)])
def test_the_unet_runs_the_doubled_batch_only_under_guidance(guidance: float, unet_batch: int) -> None:
    unet, vae, marks, image = run_recorded(guidance, batch=3)
    assert len(unet.inputs) == STEPS and len(vae.inputs) == 1
    null = ldm.LatentDiffusion.CONFIGS["tiny"].num_classes
    for x, t, labels in unet.inputs:
        assert x.shape[0] == t.shape[0] == labels.shape[0] == unet_batch
        if guidance != 1.0:
            assert torch.equal(x[:3], x[3:])  # the same latents, conditional half first
            assert (labels[3:] == null).all() and (labels[:3] != null).all()
        else:
            assert (labels != null).all()
    assert vae.inputs[0][0].shape[0] == 3 and image.shape[0] == 3


def test_the_marks_split_the_run_as_the_clock_saw_it() -> None:
    _, _, marks, _ = run_recorded(7.5)
    assert len(marks) == MARKS_PER_STEP * STEPS + 1
    run = SamplingRun.from_marks(marks, STEPS)
    assert run.unet_ms == pytest.approx((10.0,) * STEPS)  # what each UNet call spent, and nothing else
    assert run.vae_ms == pytest.approx(15.0)
    assert run.overhead_ms == pytest.approx(0.0, abs=1e-9)  # the fake clock charges the networks only
    assert run.e2e_ms == pytest.approx(STEPS * 10.0 + 15.0)


def test_the_timed_loop_gives_the_reference_loops_image() -> None:
    model = ldm.build("tiny")
    noise, labels = ldm.example_inputs(2, "tiny", seed=0)

    def plain(module: torch.nn.Module) -> Network:
        return lambda inputs: module(*inputs).float()

    sampler = make_sampler("ddim", model.alphas_cumprod(), STEPS)
    ours = sample(
        plain(model.unet), plain(model.vae), noise, labels, sampler, 7.5, model.null_class,
        model.config.scale_factor, HostStepClock(),
    )  # fmt: skip
    with torch.inference_mode():
        theirs = reference_sample(
            model.unet, model.vae, noise, labels, make_sampler("ddim", model.alphas_cumprod(), STEPS), 7.5,
            model.null_class, model.config.scale_factor,
        )  # fmt: skip
    assert torch.equal(ours, theirs.float())


# --- whole cells through the harness ---------------------------------------------------------------


def run_cells(out: Path, **config: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    cfg = RunConfig(**{**SAMPLE, **config})  # type: ignore[arg-type]
    device = Device("cpu")
    specs = resolve_models(cfg.models, cfg.custom_models, cfg.weights)
    Runner(cfg, device, ResultWriter(out), run_id="test").run(
        plan_cells(specs, cfg.size, resolve_pipelines(cfg.pipelines, device), cfg.batch_sizes)
    )
    return read_cells(out), read_samples(out)


def check_ok_rows(cells: pd.DataFrame, samples: pd.DataFrame, steps: int, guidance: float) -> None:
    assert (cells["status"] == "ok").all(), cells["reason"].tolist()
    assert (cells["workload"] == "sample").all()
    for row in cells.itertuples():
        assert row.steps == steps and row.guidance == guidance and row.sampler == "ddim"
        assert row.unet_step_ms > 0 and row.vae_decode_ms > 0
        assert row.s_per_image > 0 and row.it_s == pytest.approx(steps / (row.s_per_image * row.batch_size))
        assert f"(unet batch {row.batch_size * (1 if guidance == 1 else 2)})" in row.notes
        mine = samples[samples["cell_id"] == row.cell_id]
        counts = mine["phase"].value_counts().to_dict()
        assert counts == {"sample": row.n_samples, "unet": steps * row.n_samples, "vae": row.n_samples}, (
            counts
        )
        assert sorted(set(mine[mine["phase"] == "unet"]["step"])) == list(range(steps))
        parts = mine[mine["phase"] != "sample"].groupby("iter")["latency_ms"].sum().sort_index()
        whole = mine[mine["phase"] == "sample"].set_index("iter")["latency_ms"].sort_index()
        assert (parts.to_numpy() <= whole.to_numpy() + 1e-9).all()  # the networks fit inside the run


def test_ldm_tiny_samples_in_fp32_bf16_and_channels_last(tmp_path: Path) -> None:
    cells, samples = run_cells(
        tmp_path / "run", models=("ldm",), pipelines=("fp32", "bf16", "channels_last"), batch_sizes=(2,)
    )
    assert list(cells["pipeline"]) == ["fp32", "bf16", "channels_last"]
    check_ok_rows(cells, samples, STEPS, 7.5)
    fp32, bf16, channels_last = (cells.iloc[i] for i in range(3))
    assert fp32["psnr_db"] == math.inf and fp32["max_abs_err"] == 0.0  # the reference pipeline itself
    assert bf16["precision"] == "bf16" and 10 < bf16["psnr_db"] < math.inf
    assert channels_last["psnr_db"] > 60  # same math, other memory order
    assert bf16["model_bytes"] == pytest.approx(fp32["model_bytes"] / 2, rel=0.05)


@pytest.mark.slow
def test_ldm_tiny_int8_runs_through_onnxruntime(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    cells, samples = run_cells(
        tmp_path / "run", models=("ldm",), pipelines=("fp32", "int8"), batch_sizes=(1,)
    )
    check_ok_rows(cells, samples, STEPS, 7.5)
    int8 = cells.iloc[1]
    assert "onnxruntime" in int8["runtime"]
    assert 0 < int8["psnr_db"] < math.inf


def test_without_guidance_the_cells_unet_sees_the_plain_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real = sample_module.on_device

    def recording_on_device(runtime: LoadedModel, device: Device) -> Network:
        call = real(runtime, device)

        def record(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
            if len(inputs) == 3:  # the UNet: (latents, t, labels); the VAE takes one latent
                seen.append(int(inputs[0].shape[0]))
            return call(inputs)

        return record

    monkeypatch.setattr(sample_module, "on_device", recording_on_device)
    cells, samples = run_cells(
        tmp_path / "run", models=("ldm",), pipelines=("fp32",), batch_sizes=(2,), guidance=1.0
    )
    check_ok_rows(cells, samples, STEPS, 1.0)
    assert seen and set(seen) == {2}
    assert len(seen) % STEPS == 0 and len(seen) >= STEPS * (cells.iloc[0]["n_samples"] + 1)
    assert cells.iloc[0]["psnr_db"] == math.inf

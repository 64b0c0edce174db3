"""Diffusion sampling, measured: seconds per image, it/s, and the split into UNet, VAE and the sampler.

One sampling run is ``steps`` UNet calls (each on the doubled batch when classifier-free
guidance is on) with the sampler's step rule between them, then one VAE decode. Its
step clock is marked before and after every UNet call and after every sampler step,
then after the VAE; from those marks (ms from the start):

- ``unet_step_ms``: mean time of one UNet call, the CFG batch included;
- ``vae_decode_ms``: the VAE decode;
- ``sampler_overhead_ms``: everything that is neither (the step rule, guidance's
  combination, scaling the model input);
- ``s_per_image`` = end-to-end / batch, ``images_s`` its inverse, ``it_s`` = steps /
  end-to-end seconds, as published Stable Diffusion benchmarks define it.

A cell repeats whole runs; each column is the median over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import ClassVar

from bench.core.columns import RowPart

#: marks per sampling step (before the UNet, after it, after the step rule), and one after the VAE
MARKS_PER_STEP = 3


@dataclass(frozen=True)
class SamplingRun:
    """One sampling run's parts, in ms."""

    unet_ms: tuple[float, ...]
    vae_ms: float
    e2e_ms: float

    @classmethod
    def from_marks(cls, marks: list[float], steps: int) -> SamplingRun:
        """``marks``: ms from the start at (before UNet, after UNet, after step) x steps, then after the VAE."""
        if len(marks) != MARKS_PER_STEP * steps + 1:
            raise ValueError(f"a {steps}-step run has {len(marks)} marks, not {MARKS_PER_STEP * steps + 1}")
        unet = tuple(marks[3 * i + 1] - marks[3 * i] for i in range(steps))
        return cls(unet_ms=unet, vae_ms=marks[-1] - marks[-2], e2e_ms=marks[-1])

    @property
    def overhead_ms(self) -> float:
        return self.e2e_ms - sum(self.unet_ms) - self.vae_ms


@dataclass(frozen=True)
class SamplingMetrics(RowPart):
    """The sample workload's columns."""

    steps: int
    guidance: float
    sampler: str
    s_per_image: float
    images_s: float
    it_s: float
    unet_step_ms: float
    vae_decode_ms: float
    sampler_overhead_ms: float

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "steps", "guidance", "sampler", "s_per_image", "images_s", "it_s", "unet_step_ms", "vae_decode_ms",
        "sampler_overhead_ms",
    )  # fmt: skip

    @classmethod
    def of(cls, runs: list[SamplingRun], batch: int, guidance: float, sampler: str) -> SamplingMetrics:
        if not runs:
            raise ValueError("no timed sampling run")
        steps = len(runs[0].unet_ms)
        e2e_s = median(r.e2e_ms for r in runs) / 1e3
        return cls(
            steps=steps,
            guidance=guidance,
            sampler=sampler,
            s_per_image=e2e_s / batch,
            images_s=batch / e2e_s,
            it_s=steps / e2e_s,
            unet_step_ms=median(sum(r.unet_ms) / steps for r in runs),
            vae_decode_ms=median(r.vae_ms for r in runs),
            sampler_overhead_ms=median(r.overhead_ms for r in runs),
        )

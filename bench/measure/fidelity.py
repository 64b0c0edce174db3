"""Output error of an optimized model against the fp32 eager reference.

PSNR uses the reference's own dynamic range (max - min) as the peak, because
generator outputs are in [-1, 1] (tanh), VAE outputs are unbounded and a UNet
predicts noise: a fixed peak of 1.0 would not mean the same for each.

A reference whose range is zero (a scalar output, a constant image) has no
dynamic range to compare against, so its peak is its magnitude, max(|ref|): the
PSNR is then the error relative to the value itself, and float round-off (4.8e-7
on a 1.0) reads ~126 dB, not -inf. An all-zero reference has no magnitude either:
its peak is 1.0 (the error in absolute terms). PSNR is +inf only for bit-identical
output and -inf only for output holding NaN or inf (bench.core.numbers writes them
"exact" and "non-finite").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from bench.core.columns import RowPart

DEFAULT_MIN_PSNR_DB = 30.0


@dataclass(frozen=True)
class Fidelity(RowPart):
    """How close a pipeline's output is to the fp32 eager reference, and whether it passes the gate."""

    psnr_db: float
    max_abs_err: float
    cosine: float
    min_psnr_db: float = DEFAULT_MIN_PSNR_DB  # the quality gate (--min-psnr) ``ok`` applies
    #: the gate's verdict when another measure decides it (a generate cell's token match); None: the PSNR's
    passed: bool | None = None

    COLUMNS: ClassVar[tuple[str, ...]] = ("psnr_db", "max_abs_err", "cosine", "fidelity_ok")

    @property
    def ok(self) -> bool:
        return self.passed if self.passed is not None else self.psnr_db >= self.min_psnr_db

    @classmethod
    def gated_by(cls, passed: bool) -> Fidelity:
        """No image to compare (a generate cell): the PSNR columns empty, the gate decided elsewhere."""
        return cls(math.nan, math.nan, math.nan, passed=passed)

    def columns(self) -> dict[str, Any]:
        return {
            "psnr_db": self.psnr_db,
            "max_abs_err": self.max_abs_err,
            "cosine": self.cosine,
            "fidelity_ok": self.ok,
        }


def psnr_peak(reference: torch.Tensor) -> float:
    """The peak PSNR divides by (module docstring): the value range, else the magnitude, else 1.0."""
    if not reference.numel():
        return 1.0
    value_range = float(reference.max() - reference.min())
    if value_range > 0.0:
        return value_range
    magnitude = float(reference.abs().max())
    return magnitude if magnitude > 0.0 else 1.0


def compare_outputs(
    reference: torch.Tensor, output: torch.Tensor, min_psnr_db: float = DEFAULT_MIN_PSNR_DB
) -> Fidelity:
    """PSNR (dB, inf when identical), max absolute error and cosine similarity of the flattened outputs."""
    if reference.shape != output.shape:
        raise ValueError(
            f"output shape {tuple(output.shape)} differs from reference {tuple(reference.shape)}"
        )
    ref = reference.detach().double().cpu().flatten()
    out = output.detach().double().cpu().flatten()
    if not torch.isfinite(out).all():
        return Fidelity(-math.inf, math.inf, math.nan, min_psnr_db)
    err = out - ref
    max_abs = float(err.abs().max()) if err.numel() else 0.0
    if max_abs == 0.0:
        psnr = math.inf
    else:
        # the RMS error scaled by max_abs and logs subtracted: squares of tiny errors (or peaks) underflow
        rms = max_abs * math.sqrt(float(((err / max_abs) ** 2).mean()))
        psnr = 20.0 * (math.log10(psnr_peak(ref)) - math.log10(rms))
    denom = float(ref.norm() * out.norm())
    cosine = float(ref @ out) / denom if denom > 0 else (1.0 if max_abs == 0.0 else 0.0)
    return Fidelity(psnr, max_abs, cosine, min_psnr_db)

"""Output error of an optimized model against the fp32 eager reference.

PSNR uses the reference's own dynamic range (max - min) as the peak, because
generator outputs are in [-1, 1] (tanh), VAE outputs are unbounded and a UNet
predicts noise: a fixed peak of 1.0 would not mean the same for each.
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

    COLUMNS: ClassVar[tuple[str, ...]] = ("psnr_db", "max_abs_err", "cosine", "fidelity_ok")

    @property
    def ok(self) -> bool:
        return self.psnr_db >= self.min_psnr_db

    def columns(self) -> dict[str, Any]:
        return {
            "psnr_db": self.psnr_db,
            "max_abs_err": self.max_abs_err,
            "cosine": self.cosine,
            "fidelity_ok": self.ok,
        }


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
    mse = float((err * err).mean())
    max_abs = float(err.abs().max()) if err.numel() else 0.0
    peak = float(ref.max() - ref.min()) if ref.numel() else 0.0
    if mse == 0.0:
        psnr = math.inf
    elif peak == 0.0:
        psnr = -math.inf
    else:
        psnr = 10.0 * math.log10(peak * peak / mse)
    denom = float(ref.norm() * out.norm())
    cosine = float(ref @ out) / denom if denom > 0 else (1.0 if mse == 0.0 else 0.0)
    return Fidelity(psnr, max_abs, cosine, min_psnr_db)

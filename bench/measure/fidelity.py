"""Output error of an optimized model against the fp32 eager reference.

PSNR uses the reference's own dynamic range (max - min) as the peak, because
generator outputs are in [-1, 1] (tanh), VAE outputs are unbounded and a UNet
predicts noise: a fixed peak of 1.0 would not mean the same for each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Fidelity:
    psnr_db: float
    max_abs_err: float
    cosine: float

    def ok(self, min_psnr_db: float) -> bool:
        return self.psnr_db >= min_psnr_db


def compare_outputs(reference: torch.Tensor, output: torch.Tensor) -> Fidelity:
    """PSNR (dB, inf when identical), max absolute error and cosine similarity of the flattened outputs."""
    if reference.shape != output.shape:
        raise ValueError(
            f"output shape {tuple(output.shape)} differs from reference {tuple(reference.shape)}"
        )
    ref = reference.detach().double().cpu().flatten()
    out = output.detach().double().cpu().flatten()
    if not torch.isfinite(out).all():
        return Fidelity(psnr_db=-math.inf, max_abs_err=math.inf, cosine=math.nan)
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
    return Fidelity(psnr_db=psnr, max_abs_err=max_abs, cosine=cosine)

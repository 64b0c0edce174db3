"""What counts as a change, and how sure we are: the bootstrap interval and the verdict it gives.

For each pair of ``ok`` cells the latency ratio is
``median(NEW samples) / median(BASE samples)`` over the raw per-iteration
samples in samples.csv, and its 95% confidence interval is a percentile
bootstrap: each side is resampled with replacement 2000 times, independently,
with a numpy Generator of fixed seed (the same inputs always give the same
verdict), and the 2.5th and 97.5th percentiles of the resampled ratios bound
the interval. Where a side has several repeats the bootstrap is two-level:
first the repeats are resampled, then the samples within each chosen repeat.
That is what lets run-to-run variance widen the interval: on a shared machine
one run can sit 40% slower for its whole duration (measured here, single
threaded, same code), which a one-run interval reads as a confident change.

Why a bootstrap of medians rather than a rank test: the median is what the
tables report (p50; throughput = batch / p50), it ignores the long right tail
that interruptions add, and the interval is an interval of the effect size
itself, which a threshold can be held against (a rank test only says
"different", and says it for a 0.1% shift given enough samples). The
throughput ratio is the inverse (same batch), with the interval inverted.

Verdict, with threshold t (``--threshold 5%``) and band [1/(1+t), 1+t]:
``regressed`` when the whole latency interval lies above 1+t, ``improved`` when
it lies below 1/(1+t), ``unchanged`` when it lies inside the band, ``noisy``
otherwise (too wide to say, or fewer than MIN_SAMPLES raw samples on a side).
With ``--min-change-ms`` m, a speed change must also be larger than m milliseconds of
p50 latency at the near end of its interval (base p50 x (lo - 1) for a slowdown):
on sub-millisecond cells a shared machine's scheduler moves the median by tens of
percent, which a relative threshold alone reads as a regression.
Beyond speed a cell is ``regressed`` when its status went from ok to anything
else (in any repeat), or its PSNR dropped by more than ``--max-psnr-drop`` dB;
it is ``improved`` when it runs where it did not. PSNR is inf for bit-identical
output; values above PSNR_CEILING_DB are float round-off either way, so both
sides are clipped there before taking the drop (inf -> 120 dB is no drop,
inf -> 40 dB is a 60 dB drop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

VERDICTS = ("regressed", "improved", "noisy", "unchanged")
MIN_SAMPLES = 5
PSNR_CEILING_DB = 100.0


@dataclass(frozen=True)
class Settings:
    """What counts as a change. ``threshold`` is a fraction: 0.05 means 5%."""

    threshold: float = 0.05
    max_psnr_drop_db: float = 1.0
    min_change_ms: float = 0.0
    n_boot: int = 2000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 10:
            raise ValueError(f"threshold must be a positive fraction, got {self.threshold}")
        if not self.max_psnr_drop_db >= 0:
            raise ValueError("--max-psnr-drop must be >= 0 dB")
        if not self.min_change_ms >= 0:
            raise ValueError("--min-change-ms must be >= 0")


@dataclass(frozen=True)
class RatioCI:
    """Point estimate and confidence interval of median(new) / median(base)."""

    ratio: float
    lo: float
    hi: float


def parse_threshold(text: str) -> float:
    """'5%' -> 0.05 and '0.05' -> 0.05; a bare number >= 1 is refused (5 would mean 500%)."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ValueError(f"threshold {text!r} is not a number or a percentage like 5%") from None
    if not raw.endswith("%") and value >= 1:
        raise ValueError(f"threshold {text!r} is ambiguous: write a percentage like {raw}%")
    if not 0 < value < 10:
        raise ValueError(f"threshold {text!r} must be above 0% and below 1000%")
    return value


# ------------------------------------------------------------------ statistics
def _as_repeats(samples: np.ndarray | list[float] | list[np.ndarray]) -> list[np.ndarray]:
    """One array (one run) or a list of arrays (repeats) -> a list of non-empty float arrays."""
    if isinstance(samples, np.ndarray) or (samples and not isinstance(samples[0], (np.ndarray, list))):
        repeats = [np.asarray(samples, dtype=float)]
    else:
        repeats = [np.asarray(r, dtype=float) for r in samples]
    return [r for r in repeats if len(r)]


def _bootstrap_medians(repeats: list[np.ndarray], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``n_boot`` resamples: of the samples for one run, of runs then samples for several."""
    if len(repeats) == 1:
        x = repeats[0]
        out = np.empty(n_boot)
        per_chunk = max(1, 2_000_000 // len(x))  # ~16 MB of indices per chunk
        for start in range(0, n_boot, per_chunk):
            count = min(per_chunk, n_boot - start)
            out[start : start + count] = np.median(x[rng.integers(0, len(x), size=(count, len(x)))], axis=1)
        return out
    # Two levels, vectorized: runs padded with NaN to one length; each replicate picks k runs
    # (with replacement) and resamples within each pick; the median skips the padding.
    k = len(repeats)
    lengths = np.array([len(r) for r in repeats])
    width = int(lengths.max())
    padded = np.full((k, width), np.nan)
    for i, r in enumerate(repeats):
        padded[i, : len(r)] = r
    out = np.empty(n_boot)
    per_chunk = max(1, 2_000_000 // (k * width))
    for start in range(0, n_boot, per_chunk):
        count = min(per_chunk, n_boot - start)
        runs = rng.integers(0, k, size=(count, k, 1))
        picks = np.floor(rng.random((count, k, width)) * lengths[runs]).astype(np.int64)
        values = padded[runs, picks]
        values[np.arange(width) >= lengths[runs]] = np.nan  # beyond the chosen run's length
        ordered = np.sort(values.reshape(count, -1), axis=1)  # NaN sorts last
        valid = lengths[runs[:, :, 0]].sum(axis=1)
        low = np.take_along_axis(ordered, ((valid - 1) // 2)[:, None], axis=1)[:, 0]
        high = np.take_along_axis(ordered, (valid // 2)[:, None], axis=1)[:, 0]
        out[start : start + count] = (low + high) / 2
    return out


def bootstrap_ratio(
    base: np.ndarray | list[float] | list[np.ndarray],
    new: np.ndarray | list[float] | list[np.ndarray],
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> RatioCI:
    """Percentile-bootstrap interval of median(new) / median(base); each side one run or a list of repeats."""
    b, n = _as_repeats(base), _as_repeats(new)
    if not b or not n:
        raise ValueError("bootstrap needs samples on both sides")
    rng = np.random.default_rng(seed)
    ratios = _bootstrap_medians(n, n_boot, rng) / _bootstrap_medians(b, n_boot, rng)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(ratios, [alpha, 1 - alpha])
    point = float(np.median(np.concatenate(n)) / np.median(np.concatenate(b)))
    return RatioCI(point, float(lo), float(hi))


def speed_verdict(ci: RatioCI, threshold: float) -> str:
    """Latency-ratio interval -> regressed / improved / unchanged / noisy (module docstring)."""
    upper, lower = 1 + threshold, 1 / (1 + threshold)
    if ci.lo > upper:
        return "regressed"
    if ci.hi < lower:
        return "improved"
    if ci.lo >= lower and ci.hi <= upper:
        return "unchanged"
    return "noisy"


def psnr_drop(base_db: float, new_db: float) -> float:
    """dB lost from BASE to NEW, both clipped at PSNR_CEILING_DB; NaN when either is unknown."""
    if math.isnan(base_db) or math.isnan(new_db):
        return math.nan
    if new_db == -math.inf:  # NEW gives non-finite output
        return 0.0 if base_db == -math.inf else math.inf
    return min(base_db, PSNR_CEILING_DB) - min(new_db, PSNR_CEILING_DB)

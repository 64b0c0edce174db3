"""What counts as a change, and how sure we are: the bootstrap interval, run-to-run drift, the verdict.

For each pair of ``ok`` cells the latency ratio is
``median(NEW samples) / median(BASE samples)`` over the raw per-iteration
samples in samples.csv, and its 95% confidence interval is a percentile
bootstrap: each side is resampled with replacement 2000 times, independently,
with a numpy Generator of fixed seed (the same inputs always give the same
verdict), and the 2.5th and 97.5th percentiles of the resampled ratios bound
the interval. Where a side has several repeats (``bench run --repeats N``, or
runs merged into one folder) the bootstrap is two-level: first the repeats are
resampled, then the samples within each chosen repeat, so the spread between
repeats widens the interval.

Why a bootstrap of medians rather than a rank test: the median is what the
tables report (p50; throughput = batch / p50), it ignores the long right tail
that interruptions add, and the interval is an interval of the effect size
itself, which a threshold can be held against (a rank test only says
"different", and says it for a 0.1% shift given enough samples). The
throughput ratio is the inverse (same batch), with the interval inverted.

Run-to-run drift (measured). The interval covers the noise within a run, not the
machine's speed changing between runs. Measured on this project's machine (a
2-vCPU cloud guest, "AMD EPYC" with AVX-512 VNNI/BF16, torch 2.13 CPU), 2 Dec 2026,
each run started after other processes used under 0.15 cores for 3 s: 27 runs of
the same code, 21 of the tiny dcgan/vae/unet matrix (fp32/bf16/channels_last,
batch 1 and 4, 1 s budget) at 2 threads or 1, in-process or a worker per cell, and
6 of vae/unet small (10-35 ms cells). Of 920 same-cell pairs between runs of the
same settings 170 had a contended side. Of the 750 quiet ones the p50 ratio ran
from 0.44 to 2.01 and 622 (83%) had a 95% interval that missed 1.0: at a 5%
threshold the interval alone called 166 of them regressed and 333 improved (92
and 223 at 25%). It missed 1.0 by up to a factor of 2.22, at every latency (worst
2.05 below 0.5 ms, 2.22 at 0.5-2 ms, 1.94 at 2-10 ms, 1.81 at 10-35 ms) and in
every setting (2 threads 2.22 in-process, 2.13 a worker per cell; 1 thread 2.02
and 1.87). Pinning does not help (a conv stack pinned to either vCPU went from
0.38 to 0.58 ms within a minute): the guest's own speed changes, out of sight of
/proc/stat, so the contention meter sees none of it. Pooling repeats helps less
than the bootstrap assumes, since consecutive runs share a slow spell: of two
pairs of 3-run pools, one (1 thread, in-process) still got 3 false regressions
from the two-level bootstrap alone at 5% and 1 at 25%, and the other (the
nightly's settings: 1 thread, a worker per cell) 1 false improvement at either.

So a speed change must also exceed a drift allowance: SINGLE_RUN_DRIFT = 1.25,
a factor of 2.25 (the worst measured, 2.22, rounded up) between two single runs.
A side pooling k repeats drifts as a mean of k runs, so the factor is
2.25 ** sqrt((1/k_base + 1/k_new) / 2): 1.60 with 3 repeats a side, 1.44 with 5,
1.29 with 10 (drift_allowance; the k > 3 values follow from the model, unmeasured).
It is the same at every latency, since the measurements give no reason to make it
smaller anywhere. With it the 750 quiet pairs give 0 regressions and 0
improvements at 5% and at 25%, and so do both pairs of pools. The price, said
plainly: between single runs on such a machine a change is called only when the
interval clears (1+t) x 2.25, so a real 2x slowdown mostly reads ``noisy``
("beyond 5%, but not beyond it and the x2.25 run-to-run drift of single runs")
and fails no job (of the 6 cells of a unet slowed 2x between two recorded runs, the
3 at batch 4 were called regressed, the 3 at batch 1 noisy). With 3 repeats a side the bar at 5% is 1.68: a 2x slowdown
of every cell was called regressed in 5 of 18 cells of the nightly-settings pools
and in 6 of the 11 uncontended cells of the other pair (0 and 5 at 25%, where
the bar is 2.0). On a quieter machine (a dedicated runner) ``Settings(drift_allowance=False)``
judges by the interval alone.

Headline metrics. Each workload is judged on the figure its users read, with the same
bootstrap, drift allowance, threshold and floor (``judge_speed``, called once per metric):

- ``forward``: latency, the samples themselves (one forward call each);
- ``sample``: s/image = one sampling run's end-to-end time / batch; the batch is the
  same on both sides, so its ratio is the latency ratio of the whole-run samples,
  labelled ``s/image``;
- ``generate``: output tokens/s = batch x new tokens / end-to-end time, the same work on
  both sides, so its ratio is the inverse of the whole-generation latency ratio (and
  its interval the inverted interval): faster is a ratio above 1. And TPOT, judged
  apart: per timed generation the mean of its decode steps (samples.csv's ``decode``
  phase; ``Run.tpot_by_cell``) is one TPOT sample. A generation is mostly prefill at
  short outputs and mostly decode at long ones, so a decode regression can hide in an
  end-to-end figure dominated by prefill (or the reverse): the pair is ``regressed``
  when either headline is, and its reason says which. ``--min-change-ms`` holds TPOT
  to the ms of a whole generation's decode (TPOT x (new_tokens - 1)), the time the
  change costs one call, as it holds the others to one call's p50.

Verdict, with threshold t (``--threshold 5%``), band [1/(1+t), 1+t] and drift d:
``regressed`` when the whole latency interval lies above (1+t)(1+d), ``improved``
when it lies below 1/((1+t)(1+d)), ``unchanged`` when it lies inside the band (the
two measurements agree within t; a drift as large as d could still hide a change
that size, which is why d only ever raises the bar for a change), ``noisy``
otherwise (too wide to say, within the drift, or fewer than MIN_SAMPLES raw
samples on a side). A pair whose cell shared its CPU or GPU with another process
in any repeat, on either side (``contended``, bench.measure.contention; empty in
older runs, read as not contended), is ``contended`` instead of any speed verdict:
its latency is partly the neighbour's (both headlines of a generate pair).
With ``--min-change-ms`` m, a speed change must also be larger than m milliseconds of
p50 latency at the near end of its interval (base p50 x (lo - 1) for a slowdown):
on sub-millisecond cells a shared machine's scheduler moves the median by tens of
percent, which a relative threshold alone reads as a regression.
Beyond speed a cell is ``regressed`` when its status went from ok to anything
else (in any repeat), or its PSNR dropped by more than ``--max-psnr-drop`` dB,
whatever the load; it is ``improved`` when it runs where it did not. PSNR is inf
for bit-identical output; values above PSNR_CEILING_DB are float round-off either
way, so both sides are clipped there before taking the drop (inf -> 120 dB is no
drop, inf -> 40 dB is a 60 dB drop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

VERDICTS = ("regressed", "contended", "improved", "noisy", "unchanged")
MIN_SAMPLES = 5
PSNR_CEILING_DB = 100.0

#: how far one cell's p50 moves between two single runs of the same code on a quiet machine, beyond
#: what the within-run interval covers: 1.25 = a factor of 2.25 (module docstring, "Run-to-run drift")
SINGLE_RUN_DRIFT = 1.25
#: the repeats per side that ``bench run --repeats`` should be given (what the notes and reasons suggest)
SUGGESTED_REPEATS = 3


@dataclass(frozen=True)
class Settings:
    """What counts as a change. ``threshold`` is a fraction: 0.05 means 5%.

    ``drift_allowance``: a speed change must also exceed the measured run-to-run drift
    (module docstring); False judges by the bootstrap interval alone (a quiet, dedicated machine).
    """

    threshold: float = 0.05
    max_psnr_drop_db: float = 1.0
    min_change_ms: float = 0.0
    drift_allowance: bool = True
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


def drift_allowance(repeats_base: int, repeats_new: int, single_run: float = SINGLE_RUN_DRIFT) -> float:
    """The run-to-run drift a change must also exceed, as a fraction (1.25: a factor of 2.25).

    ``single_run`` is the drift between two single runs. A side pooling k repeats
    drifts as a mean of k runs: in log terms the allowance scales with
    sqrt((1/k_base + 1/k_new) / 2), so two single runs get all of it, 3 repeats a side
    a factor of 2.25 ** sqrt(1/3) = 1.60. It applies on top of the two-level
    bootstrap, which with a handful of repeats does not cover the drift (module
    docstring). A side without samples (k = 0) has no interval to widen: 0.
    """
    if repeats_base < 1 or repeats_new < 1:
        return 0.0
    scale = math.sqrt((1 / repeats_base + 1 / repeats_new) / 2)
    return float(math.exp(math.log1p(single_run) * scale) - 1)


def speed_verdict(ci: RatioCI, threshold: float, drift: float = 0.0) -> str:
    """Latency-ratio interval -> regressed / improved / unchanged / noisy (module docstring).

    ``drift`` (drift_allowance) raises the bar for a change only: the interval must
    clear the band widened by it, (1 + threshold) x (1 + drift).
    """
    upper, lower = 1 + threshold, 1 / (1 + threshold)
    if ci.lo > upper * (1 + drift):
        return "regressed"
    if ci.hi < lower / (1 + drift):
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


# ------------------------------------------------------------------ one metric's speed verdict
@dataclass(frozen=True)
class Metric:
    """What a speed verdict is about. Its samples are always times in ms (one per call, or TPOT).

    ``higher_is_better``: the metric is the samples' inverse (tokens/s), so its ratio is
    1 / the time ratio and "faster" reads as a ratio above 1. ``call_steps``: how many
    samples' worth of ms one call spends (TPOT: the new_tokens - 1 decode steps), what
    the ``--min-change-ms`` floor holds the change to.
    """

    name: str
    higher_is_better: bool = False
    call_steps: float = 1.0


LATENCY = Metric("latency")
#: each workload's headline metric (module docstring, "Headline metrics")
HEADLINES: dict[str, Metric] = {
    "forward": LATENCY,
    "sample": Metric("s/image"),
    "generate": Metric("tokens/s", higher_is_better=True),
}


def headline(workload: str) -> Metric:
    """The workload's headline metric; an unknown workload is judged on latency, as forward is."""
    return HEADLINES.get(workload, LATENCY)


def tpot_metric(new_tokens: int) -> Metric:
    """TPOT of a generation of ``new_tokens``: one sample per generation, new_tokens - 1 decode steps each."""
    return Metric("TPOT", call_steps=max(new_tokens - 1, 1))


@dataclass(frozen=True)
class SpeedJudgement:
    """One metric's speed verdict for a pair: the interval, the drift it had to clear, the reasons."""

    metric: Metric
    speed: str  # regressed | improved | unchanged | noisy (contention is the caller's: it is per pair)
    ci: RatioCI | None  # median(new) / median(base) of the time samples; None with too few samples
    drift: float
    reasons: tuple[str, ...]

    @property
    def metric_ci(self) -> RatioCI | None:
        """The ratio of the metric itself: the time ratio, or its inverse (interval inverted) for tokens/s."""
        if self.ci is None or not self.metric.higher_is_better:
            return self.ci
        return RatioCI(1 / self.ci.ratio, 1 / self.ci.hi, 1 / self.ci.lo)


TIME_REASONS = {
    "regressed": "slower: interval all above +{t:.0%}{d}",
    "improved": "faster: interval all below -{tl:.1%}{d}",
    "unchanged": "interval within +-{t:.0%}",
    "noisy": "interval too wide to say at +-{t:.0%}",
}
RATE_REASONS = {  # the same intervals, said of a rate (the inverse of the time ratio)
    "regressed": "slower: interval all below -{tl:.1%}{d}",
    "improved": "faster: interval all above +{t:.0%}{d}",
    "unchanged": "interval within +-{t:.0%}",
    "noisy": "interval too wide to say at +-{t:.0%}",
}


def _runs(base: int, new: int) -> str:
    """'single runs', '3 repeats a side' or '1 and 3 repeats'."""
    if base == new:
        return "single runs" if base == 1 else f"{base} repeats a side"
    return f"{base} and {new} repeats"


def judge_speed(
    b_reps: list[np.ndarray], n_reps: list[np.ndarray], settings: Settings, metric: Metric = LATENCY
) -> SpeedJudgement:
    """The speed verdict of one metric from each side's repeats of time samples (ms).

    The bootstrap pools repeats (two levels), the drift allowance shrinks with them, and
    a change must clear the threshold, the drift and the ``--min-change-ms`` floor (module
    docstring). The reasons name the metric unless it is plain latency.
    """
    t = settings.threshold
    prefix = "" if metric == LATENCY else f"{metric.name} "
    n_base, n_new = sum(len(r) for r in b_reps), sum(len(r) for r in n_reps)
    if min(n_base, n_new) < MIN_SAMPLES:
        what = "raw samples" if metric == LATENCY else f"{metric.name} samples"
        reason = f"too few {what} for an interval (BASE {n_base}, NEW {n_new})"
        return SpeedJudgement(metric, "noisy", None, 0.0, (reason,))
    ci = bootstrap_ratio(
        b_reps, n_reps, n_boot=settings.n_boot, confidence=settings.confidence, seed=settings.seed
    )
    drift = drift_allowance(len(b_reps), len(n_reps)) if settings.drift_allowance else 0.0
    speed = speed_verdict(ci, t, drift)
    without_drift = speed_verdict(ci, t)
    d = f" and x{1 + drift:.2f} run-to-run drift" if drift and speed in ("regressed", "improved") else ""
    texts = RATE_REASONS if metric.higher_is_better else TIME_REASONS
    reasons = [prefix + texts[speed].format(t=t, tl=1 - 1 / (1 + t), d=d)]
    if speed == "noisy" and without_drift in ("regressed", "improved"):
        more = max(SUGGESTED_REPEATS, len(b_reps) + 2, len(n_reps) + 2)
        reasons[-1] = (
            f"{prefix}{'slower' if without_drift == 'regressed' else 'faster'} beyond +-{t:.0%}, but not beyond "
            f"it and the x{1 + drift:.2f} run-to-run drift of {_runs(len(b_reps), len(n_reps))} "
            f"(more repeats shrink it: bench run --repeats {more})"
        )
    base_ms = float(np.median(np.concatenate(b_reps))) * metric.call_steps
    near_ms = base_ms * (ci.lo - 1 if speed == "regressed" else 1 - ci.hi)
    if speed in ("regressed", "improved") and near_ms <= settings.min_change_ms:
        speed = "unchanged"
        reasons.append(
            f"but possibly by only {near_ms:.3f} ms, within the {settings.min_change_ms:g} ms floor"
        )
    return SpeedJudgement(metric, speed, ci, drift, tuple(reasons))


def combined_speed(speeds: list[str]) -> str:
    """Several metrics' verdicts as one: regressed if any is, else improved if any is, else noisy
    if any is, else unchanged (every metric agreed within the threshold)."""
    for verdict in ("regressed", "improved", "noisy"):
        if verdict in speeds:
            return verdict
    return "unchanged"

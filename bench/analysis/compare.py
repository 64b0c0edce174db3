"""Compare two runs cell by cell: speed ratios with confidence intervals, fidelity, status, verdict.

How cells are paired is bench.analysis.matching; the statistics and what counts
as a change are bench.analysis.verdict. This module judges each pair and holds
the result (``Comparison``); bench.render.compare writes it for the console,
Markdown and CSV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.fingerprint_diff import different_hardware, fingerprint_differences
from bench.analysis.matching import KEY, match_cells
from bench.analysis.verdict import (
    MIN_SAMPLES,
    SUGGESTED_REPEATS,
    VERDICTS,
    RatioCI,
    Settings,
    bootstrap_ratio,
    drift_allowance,
    parse_threshold,
    psnr_drop,
    speed_verdict,
)
from bench.core.errors import RunError
from bench.core.numbers import psnr
from bench.results.store import Run

__all__ = [
    "PAIR_COLUMNS", "Comparison", "RatioCI", "Settings", "bootstrap_ratio", "compare_runs", "drift_allowance",
    "judge", "parse_threshold", "psnr_drop", "speed_verdict",
]  # fmt: skip

PAIR_COLUMNS = [
    *KEY, "host_base", "host_new", "status_base", "status_new", "runs_base", "runs_new", "n_base", "n_new",
    "p50_ms_base", "p50_ms_new", "latency_ratio", "latency_ratio_lo", "latency_ratio_hi",
    "throughput_ratio", "throughput_ratio_lo", "throughput_ratio_hi",
    "psnr_db_base", "psnr_db_new", "psnr_drop_db", "contended_base", "contended_new", "drift_allowance",
    "speed", "verdict", "why",
]  # fmt: skip


@dataclass
class Comparison:
    """Pairs with their verdicts, plus the cells found on one side only.

    ``hardware_differences`` are bench.analysis.fingerprint_diff's lines (hardware,
    software, thread count, unknown sides) between the runs' env.json, and
    ``different_hardware`` is true when the recorded hardware differs: a ratio across
    different hardware is not a code regression, which the caller may act on.
    """

    base_name: str
    new_name: str
    settings: Settings
    pairs: pd.DataFrame
    only_base: pd.DataFrame
    only_new: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    hardware_differences: list[str] = field(default_factory=list)
    different_hardware: bool = False

    def counts(self) -> dict[str, int]:
        counts = {v: int((self.pairs["verdict"] == v).sum()) for v in VERDICTS}
        counts["base only"] = len(self.only_base)
        counts["new only"] = len(self.only_new)
        return counts

    @property
    def regressed(self) -> bool:
        return bool((self.pairs["verdict"] == "regressed").any())

    def summary_line(self) -> str:
        counts = self.counts()
        text = f"{len(self.pairs)} cells compared: " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS)
        if counts["base only"] or counts["new only"]:
            text += f"; {counts['base only']} only in BASE, {counts['new only']} only in NEW (not compared)"
        return text


def _statuses(rows: pd.DataFrame) -> str:
    counts = rows["status"].value_counts()
    if len(counts) == 1 and len(rows) == 1:
        return str(counts.index[0])
    return ", ".join(f"{s} x{n}" for s, n in counts.items()) if len(counts) > 1 else f"{counts.index[0]}"


def _worst_psnr(rows: pd.DataFrame) -> float:
    values = rows["psnr_db"].dropna().to_numpy(dtype=float)
    return float(values.min()) if len(values) else math.nan


def _p50(rows: pd.DataFrame, repeats: list[np.ndarray]) -> float:
    if repeats:
        return float(np.median(np.concatenate(repeats)))
    values = rows["latency_ms_p50"].dropna().to_numpy(dtype=float)
    return float(np.median(values)) if len(values) else math.nan


def _first_reason(rows: pd.DataFrame) -> str:
    bad = rows[rows["status"] != "ok"]
    return "" if bad.empty or pd.isna(bad["reason"].iloc[0]) else str(bad["reason"].iloc[0])


def _contended(rows: pd.DataFrame) -> pd.Series:
    """Per row: did other processes share the cell's CPU or GPU? Empty (older runs) reads as no."""
    if "contended" not in rows.columns:
        return pd.Series(False, index=rows.index)
    return rows["contended"].astype("boolean").fillna(False).astype(bool)


def _runs(base: int, new: int) -> str:
    """'single runs', '3 repeats a side' or '1 and 3 repeats'."""
    if base == new:
        return "single runs" if base == 1 else f"{base} repeats a side"
    return f"{base} and {new} repeats"


def _numbers(rows: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(rows[column], errors="coerce").dropna() if column in rows.columns else pd.Series()


def _contention_text(label: str, rows: pd.DataFrame) -> str:
    """'NEW was contended (others used 48% of the cell's cores, hypervisor steal 3%) in 1 of 3 repeats'."""
    hit = rows[_contended(rows)]
    busy, steal = _numbers(hit, "host_busy_pct"), _numbers(hit, "steal_pct")
    parts = [f"others used {float(busy.max()):.0f}% of the cell's cores"] if len(busy) else []
    if len(steal) and float(steal.max()) >= 1:  # under 1% it would print as 0%
        parts.append(f"hypervisor steal {float(steal.max()):.0f}%")
    if (_numbers(hit, "gpu_other_procs") > 0).any():
        parts.append("another process shared the GPU")
    text = f"{label} was contended" + (f" ({', '.join(parts)})" if parts else "")
    if len(rows) > 1:
        text += f" in {len(hit)} of {len(rows)} repeats"
    return text


SPEED_REASONS = {
    "regressed": "slower: interval all above +{t:.0%}{d}",
    "improved": "faster: interval all below -{tl:.1%}{d}",
    "unchanged": "interval within +-{t:.0%}",
    "noisy": "interval too wide to say at +-{t:.0%}",
}


def judge(
    b_rows: pd.DataFrame,
    n_rows: pd.DataFrame,
    b_reps: list[np.ndarray],
    n_reps: list[np.ndarray],
    settings: Settings,
) -> dict[str, Any]:
    """One row of the comparison: ratios, interval, PSNR drop, verdict and the reason for it.

    ``b_reps``/``n_reps`` are the raw samples of each side's ok repeats. Order of
    judgement: a status change (ok -> error is ``regressed`` whatever the load); then
    speed, which is ``contended`` when either side shared its CPU/GPU in any repeat;
    then a PSNR drop, which is ``regressed`` whatever the speed.
    """
    first_b, first_n = b_rows.iloc[0], n_rows.iloc[0]
    out: dict[str, Any] = {c: first_n[c] if not pd.isna(first_n[c]) else first_b[c] for c in KEY}
    contended_b, contended_n = bool(_contended(b_rows).any()), bool(_contended(n_rows).any())
    out.update(
        host_base=", ".join(_unique(b_rows["host"])), host_new=", ".join(_unique(n_rows["host"])),
        status_base=_statuses(b_rows), status_new=_statuses(n_rows),
        runs_base=len(b_rows), runs_new=len(n_rows),
        n_base=sum(len(r) for r in b_reps), n_new=sum(len(r) for r in n_reps),
        p50_ms_base=_p50(b_rows, b_reps), p50_ms_new=_p50(n_rows, n_reps),
        latency_ratio=math.nan, latency_ratio_lo=math.nan, latency_ratio_hi=math.nan,
        throughput_ratio=math.nan, throughput_ratio_lo=math.nan, throughput_ratio_hi=math.nan,
        psnr_db_base=_worst_psnr(b_rows), psnr_db_new=_worst_psnr(n_rows), psnr_drop_db=math.nan,
        contended_base=contended_b, contended_new=contended_n, drift_allowance=0.0, speed="",
    )  # fmt: skip
    base_ok, new_ok = bool((b_rows["status"] == "ok").all()), bool((n_rows["status"] == "ok").all())
    if not (base_ok and new_ok):
        if base_ok:
            out["verdict"] = "regressed"
            out["why"] = f"status ok -> {out['status_new']}: {_first_reason(n_rows)}"
        elif new_ok:
            out["verdict"], out["why"] = "improved", f"status {out['status_base']} -> ok"
        else:
            out["verdict"] = "unchanged"
            out["why"] = f"did not run in either: {_first_reason(n_rows)}"
        return out

    t = settings.threshold
    reasons: list[str] = []
    if min(out["n_base"], out["n_new"]) < MIN_SAMPLES:
        speed = "noisy"
        reasons.append(f"too few raw samples for an interval (BASE {out['n_base']}, NEW {out['n_new']})")
    else:
        ci = bootstrap_ratio(
            b_reps, n_reps, n_boot=settings.n_boot, confidence=settings.confidence, seed=settings.seed
        )
        out.update(
            latency_ratio=ci.ratio, latency_ratio_lo=ci.lo, latency_ratio_hi=ci.hi,
            throughput_ratio=1 / ci.ratio, throughput_ratio_lo=1 / ci.hi, throughput_ratio_hi=1 / ci.lo,
        )  # fmt: skip
        drift = drift_allowance(len(b_reps), len(n_reps)) if settings.drift_allowance else 0.0
        out["drift_allowance"] = drift
        speed = speed_verdict(ci, t, drift)
        without_drift = speed_verdict(ci, t)
        d = f" and x{1 + drift:.2f} run-to-run drift" if drift and speed in ("regressed", "improved") else ""
        reasons.append(SPEED_REASONS[speed].format(t=t, tl=1 - 1 / (1 + t), d=d))
        if speed == "noisy" and without_drift in ("regressed", "improved"):
            reasons[-1] = (
                f"{'slower' if without_drift == 'regressed' else 'faster'} beyond +-{t:.0%}, but not beyond "
                f"it and the x{1 + drift:.2f} run-to-run drift of {_runs(len(b_reps), len(n_reps))} "
                f"(more repeats shrink it: bench run --repeats {max(SUGGESTED_REPEATS, len(b_reps) + 2, len(n_reps) + 2)})"
            )
        near_ms = out["p50_ms_base"] * (ci.lo - 1 if speed == "regressed" else 1 - ci.hi)
        if speed in ("regressed", "improved") and near_ms <= settings.min_change_ms:
            speed = "unchanged"
            reasons.append(
                f"but possibly by only {near_ms:.3f} ms, within the {settings.min_change_ms:g} ms floor"
            )
    if contended_b or contended_n:
        speed = "contended"
        shown = [_contention_text(label, rows) for label, rows, hit in
                 (("BASE", b_rows, contended_b), ("NEW", n_rows, contended_n)) if hit]  # fmt: skip
        reasons = [f"{'; '.join(shown)}: speed not judged, re-run on a quiet machine"]
    out["speed"] = verdict = speed
    drop = psnr_drop(out["psnr_db_base"], out["psnr_db_new"])
    out["psnr_drop_db"] = drop
    if not math.isnan(drop) and drop > settings.max_psnr_drop_db:
        verdict = "regressed"
        reasons.insert(
            0,
            f"PSNR {psnr(out['psnr_db_base'])} -> {psnr(out['psnr_db_new'])} dB: "
            f"a drop beyond {settings.max_psnr_drop_db:g} dB",
        )
    out["verdict"] = verdict
    out["why"] = "; ".join(reasons)
    return out


def _unique(values: pd.Series) -> list[str]:
    return list(dict.fromkeys(str(v) for v in values.dropna()))


def _describe(cells: pd.DataFrame) -> str:
    groups = cells.groupby(["model", "size", "device_name"], dropna=False).size().index
    shown = [f"{m}/{s} on {d}" for m, s, d in groups]
    return ", ".join(shown[:4]) + (f" (+{len(shown) - 4} more)" if len(shown) > 4 else "")


def _repeats(cells: pd.DataFrame, rows: list[int], samples: dict[int, np.ndarray]) -> list[np.ndarray]:
    ok = cells.iloc[rows]
    ok = ok[ok["status"] == "ok"]
    return [samples[int(c)] for c in ok["cell_id"] if int(c) in samples and len(samples[int(c)])]


def compare_runs(base: Run, new: Run, settings: Settings | None = None) -> Comparison:
    """Match the cells of two runs and judge each pair; RunError when they share nothing."""
    settings = settings or Settings()
    for label, run in (("BASE", base), ("NEW", new)):
        if run.cells.empty:
            raise RunError(f"{label} {run.path} has no cells")
    pair_rows, left_base, left_new = match_cells(base.cells, new.cells)
    if not pair_rows:
        raise RunError(
            f"BASE and NEW have no cell in common: BASE has {_describe(base.cells)}; NEW has {_describe(new.cells)}"
        )
    b_samples, n_samples = base.samples_by_cell(), new.samples_by_cell()
    rows = [
        judge(
            base.cells.iloc[b],
            new.cells.iloc[n],
            _repeats(base.cells, b, b_samples),
            _repeats(new.cells, n, n_samples),
            settings,
        )  # fmt: skip
        for b, n in pair_rows
    ]
    pairs = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    return Comparison(
        base_name=base.name, new_name=new.name, settings=settings, pairs=pairs,
        only_base=base.cells.iloc[left_base].reset_index(drop=True),
        only_new=new.cells.iloc[left_new].reset_index(drop=True), notes=_notes(base, new, pairs, settings),
        hardware_differences=fingerprint_differences(base.env, new.env),
        different_hardware=different_hardware(base.env, new.env),
    )  # fmt: skip


def _notes(base: Run, new: Run, pairs: pd.DataFrame, settings: Settings) -> list[str]:
    """What the reader should know about how the pairs were judged: pooling, drift, contention, samples."""
    notes = []
    for label, run, side in (("BASE", base, "base"), ("NEW", new, "new")):
        most = int(pairs[f"runs_{side}"].max()) if len(pairs) else 0
        if most > 1:
            runs = run.cells["run_id"].nunique()
            source = f" from {runs} runs" if runs > 1 else ""
            notes.append(
                f"{label} has up to {most} repeats of a cell{source}: repeats are resampled as runs, "
                "then as samples"
            )
    judged = pairs[pairs["drift_allowance"] > 0]
    if len(judged):
        least, most = float(judged["drift_allowance"].min()), float(judged["drift_allowance"].max())
        shown = f"x{1 + most:.2f}" if most - least < 0.005 else f"x{1 + least:.2f} to x{1 + most:.2f}"
        notes.append(
            f"a speed change must also exceed the run-to-run drift of runs of the same code, {shown} for "
            "these repeats (measured on a 2-core cloud guest: bench.analysis.verdict); more repeats "
            "(`bench run --repeats N`) shrink it"
        )
    for label, side in (("BASE", "base"), ("NEW", "new")):
        hit = int(pairs[f"contended_{side}"].astype(bool).sum()) if len(pairs) else 0
        if hit:
            notes.append(
                f"{hit} cells of {label} shared the machine with other processes while timed (contended): "
                "their speed is not judged; re-run them on a quiet machine"
            )
    for column, what in (("isolation", "isolation"), ("threads", "threads")):
        sides = [
            sorted({str(v) for v in r.cells[column].dropna()}) if column in r.cells else []
            for r in (base, new)
        ]
        if sides[0] and sides[1] and sides[0] != sides[1]:
            notes.append(
                f"BASE ran with {what} {', '.join(sides[0])} and NEW with {', '.join(sides[1])}: the ratios "
                "include that setting, beyond the drift allowance measured between runs of the same settings"
            )
    for label, run in (("BASE", base), ("NEW", new)):
        if run.samples.empty:
            notes.append(f"{label} has no raw samples (samples.csv): its ok cells can only be noisy")
    return notes

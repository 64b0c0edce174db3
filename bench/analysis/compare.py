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

from bench.analysis.matching import KEY, match_cells
from bench.analysis.verdict import (
    MIN_SAMPLES,
    VERDICTS,
    RatioCI,
    Settings,
    bootstrap_ratio,
    parse_threshold,
    psnr_drop,
    speed_verdict,
)
from bench.core.errors import RunError
from bench.core.numbers import psnr
from bench.results.store import Run

__all__ = [
    "PAIR_COLUMNS", "Comparison", "RatioCI", "Settings", "bootstrap_ratio", "compare_runs", "judge",
    "parse_threshold", "psnr_drop", "speed_verdict",
]  # fmt: skip

PAIR_COLUMNS = [
    *KEY, "host_base", "host_new", "status_base", "status_new", "runs_base", "runs_new", "n_base", "n_new",
    "p50_ms_base", "p50_ms_new", "latency_ratio", "latency_ratio_lo", "latency_ratio_hi",
    "throughput_ratio", "throughput_ratio_lo", "throughput_ratio_hi",
    "psnr_db_base", "psnr_db_new", "psnr_drop_db", "speed", "verdict", "why",
]  # fmt: skip


@dataclass
class Comparison:
    """Pairs with their verdicts, plus the cells found on one side only."""

    base_name: str
    new_name: str
    settings: Settings
    pairs: pd.DataFrame
    only_base: pd.DataFrame
    only_new: pd.DataFrame
    notes: list[str] = field(default_factory=list)

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


def judge(
    b_rows: pd.DataFrame,
    n_rows: pd.DataFrame,
    b_reps: list[np.ndarray],
    n_reps: list[np.ndarray],
    settings: Settings,
) -> dict[str, Any]:
    """One row of the comparison: ratios, interval, PSNR drop, verdict and the reason for it.

    ``b_reps``/``n_reps`` are the raw samples of each side's ok repeats.
    """
    first_b, first_n = b_rows.iloc[0], n_rows.iloc[0]
    out: dict[str, Any] = {c: first_n[c] if not pd.isna(first_n[c]) else first_b[c] for c in KEY}
    out.update(
        host_base=", ".join(_unique(b_rows["host"])), host_new=", ".join(_unique(n_rows["host"])),
        status_base=_statuses(b_rows), status_new=_statuses(n_rows),
        runs_base=len(b_rows), runs_new=len(n_rows),
        n_base=sum(len(r) for r in b_reps), n_new=sum(len(r) for r in n_reps),
        p50_ms_base=_p50(b_rows, b_reps), p50_ms_new=_p50(n_rows, n_reps),
        latency_ratio=math.nan, latency_ratio_lo=math.nan, latency_ratio_hi=math.nan,
        throughput_ratio=math.nan, throughput_ratio_lo=math.nan, throughput_ratio_hi=math.nan,
        psnr_db_base=_worst_psnr(b_rows), psnr_db_new=_worst_psnr(n_rows), psnr_drop_db=math.nan, speed="",
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
        speed = speed_verdict(ci, t)
        reasons.append(
            {
                "regressed": f"slower: interval all above +{t:.0%}",
                "improved": f"faster: interval all below -{1 - 1 / (1 + t):.1%}",
                "unchanged": f"interval within +-{t:.0%}",
                "noisy": f"interval too wide to say at +-{t:.0%}",
            }[speed]
        )
        near_ms = out["p50_ms_base"] * (ci.lo - 1 if speed == "regressed" else 1 - ci.hi)
        if speed in ("regressed", "improved") and near_ms <= settings.min_change_ms:
            speed = "unchanged"
            reasons.append(
                f"but possibly by only {near_ms:.3f} ms, within the {settings.min_change_ms:g} ms floor"
            )
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
    notes = []
    for label, run in (("BASE", base), ("NEW", new)):
        runs = run.cells["run_id"].nunique()
        if runs > 1:
            notes.append(
                f"{label} pools {runs} runs: repeats of a cell are resampled as runs, then as samples"
            )
        if run.samples.empty:
            notes.append(f"{label} has no raw samples (samples.csv): its ok cells can only be noisy")
    return Comparison(
        base_name=base.name, new_name=new.name, settings=settings,
        pairs=pd.DataFrame(rows, columns=PAIR_COLUMNS),
        only_base=base.cells.iloc[left_base].reset_index(drop=True),
        only_new=new.cells.iloc[left_new].reset_index(drop=True), notes=notes,
    )  # fmt: skip

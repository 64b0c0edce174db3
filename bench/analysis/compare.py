"""Compare two runs cell by cell: speed ratios with confidence intervals, fidelity, status, verdict.

How cells are paired is bench.analysis.matching (like with like: the same workload and
workload settings); the statistics and what counts as a change are
bench.analysis.verdict, which also says each workload's headline metric: latency for
a forward call, s/image for a sampling run, output tokens/s and TPOT for a generation
(two verdicts from the same shared judgement; the pair regresses if either does). This
module judges each pair and holds the result (``Comparison``); bench.render.compare
writes it for the console, Markdown and CSV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.fingerprint_diff import different_hardware, fingerprint_differences
from bench.analysis.matching import KEY, match_cells, settings_of, settings_text, workload_of
from bench.analysis.verdict import (
    VERDICTS,
    RatioCI,
    Settings,
    SpeedJudgement,
    bootstrap_ratio,
    combined_speed,
    drift_allowance,
    headline,
    judge_speed,
    parse_threshold,
    psnr_drop,
    speed_verdict,
    tpot_metric,
)
from bench.core.errors import RunError
from bench.core.numbers import psnr
from bench.results.store import Run

__all__ = [
    "MISMATCH_COLUMNS", "NOT_COMPARED", "PAIR_COLUMNS", "Comparison", "RatioCI", "Settings", "bootstrap_ratio",
    "compare_runs", "drift_allowance", "judge", "parse_threshold", "psnr_drop", "speed_verdict",
]  # fmt: skip

#: one row per pair. ``p50_ms_*`` and ``latency_ratio`` are of the whole calls (a forward call, a
#: generation, a sampling run); ``headline*`` is the workload's headline metric in its own unit and
#: direction (latency ms, s/image, tokens/s: a tokens/s ratio above 1 is faster); ``tpot*`` a
#: generation's second verdict, on the per-generation TPOT samples
PAIR_COLUMNS = [
    *KEY, "workload", "settings", "host_base", "host_new", "status_base", "status_new", "runs_base", "runs_new",
    "n_base", "n_new", "p50_ms_base", "p50_ms_new", "latency_ratio", "latency_ratio_lo", "latency_ratio_hi",
    "throughput_ratio", "throughput_ratio_lo", "throughput_ratio_hi",
    "headline", "headline_base", "headline_new", "headline_ratio", "headline_ratio_lo", "headline_ratio_hi",
    "headline_speed", "tpot_ms_base", "tpot_ms_new", "tpot_ratio", "tpot_ratio_lo", "tpot_ratio_hi",
    "tpot_speed", "psnr_db_base", "psnr_db_new", "psnr_drop_db", "contended_base", "contended_new",
    "drift_allowance", "speed", "verdict", "why",
]  # fmt: skip
#: one row per pair of cells with one key whose workload or its settings differ: listed, not judged
MISMATCH_COLUMNS = [
    *KEY,
    "workload_base",
    "workload_new",
    "settings_base",
    "settings_new",
    "host_base",
    "host_new",
    "why",
]
#: what the CSV's verdict column says of such a pair
NOT_COMPARED = "not compared"


@dataclass
class Comparison:
    """Pairs with their verdicts, plus the cells found on one side only and the pairs not compared.

    ``mismatched`` (MISMATCH_COLUMNS) holds the cells of one key whose workload or workload
    settings differ between the sides, each with the difference in one line: not judged.
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
    mismatched: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=MISMATCH_COLUMNS))

    def counts(self) -> dict[str, int]:
        counts = {v: int((self.pairs["verdict"] == v).sum()) for v in VERDICTS}
        counts["base only"] = len(self.only_base)
        counts["new only"] = len(self.only_new)
        counts[NOT_COMPARED] = len(self.mismatched)
        return counts

    @property
    def regressed(self) -> bool:
        return bool((self.pairs["verdict"] == "regressed").any())

    def summary_line(self) -> str:
        counts = self.counts()
        text = f"{len(self.pairs)} cells compared: " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS)
        if counts["base only"] or counts["new only"]:
            text += f"; {counts['base only']} only in BASE, {counts['new only']} only in NEW (not compared)"
        if counts[NOT_COMPARED]:
            text += f"; {counts[NOT_COMPARED]} with other workload settings on each side (not compared)"
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


def _first_value(rows: pd.DataFrame, column: str) -> Any:
    values = rows[column].dropna() if column in rows.columns else pd.Series()
    return values.iloc[0] if len(values) else None


def _settings(b_rows: pd.DataFrame, n_rows: pd.DataFrame) -> tuple[str, dict[str, Any]]:
    """The pair's workload settings, text and values, from whichever row has them (a cell that did not
    run has none; matching made the two sides agree where both have them)."""
    for rows in (n_rows, b_rows):
        for _, row in rows.iterrows():
            text = settings_text(row)
            if text:
                return text, settings_of(row)
    return "", {}


def _headline_value(workload: str, p50_ms: float, batch: int, new_tokens: int | None) -> float:
    """The headline metric in its own unit from a p50 of whole calls: ms, s/image or output tokens/s."""
    if math.isnan(p50_ms) or p50_ms <= 0:
        return math.nan
    if workload == "sample":
        return p50_ms / 1e3 / batch
    if workload == "generate":
        return batch * new_tokens * 1e3 / p50_ms if new_tokens else math.nan
    return p50_ms


def _tpot_ms(rows: pd.DataFrame, repeats: list[np.ndarray]) -> float:
    if repeats:
        return float(np.median(np.concatenate(repeats)))
    values = rows["tpot_ms"].dropna().to_numpy(dtype=float) if "tpot_ms" in rows.columns else np.array([])
    return float(np.median(values)) if len(values) else math.nan


def _ratio_columns(prefix: str, ci: RatioCI | None) -> dict[str, float]:
    if ci is None:
        return {f"{prefix}_ratio": math.nan, f"{prefix}_ratio_lo": math.nan, f"{prefix}_ratio_hi": math.nan}
    return {f"{prefix}_ratio": ci.ratio, f"{prefix}_ratio_lo": ci.lo, f"{prefix}_ratio_hi": ci.hi}


def judge(
    b_rows: pd.DataFrame,
    n_rows: pd.DataFrame,
    b_reps: list[np.ndarray],
    n_reps: list[np.ndarray],
    settings: Settings,
    b_tpots: list[np.ndarray] | None = None,
    n_tpots: list[np.ndarray] | None = None,
) -> dict[str, Any]:
    """One row of the comparison: ratios, intervals, PSNR drop, verdict and the reason for it.

    ``b_reps``/``n_reps`` are the whole-call samples of each side's ok repeats,
    ``b_tpots``/``n_tpots`` a generate cell's per-generation TPOT samples. Order of
    judgement: a status change (ok -> error is ``regressed`` whatever the load); then
    speed, on the workload's headline metric and, for a generation, on TPOT too
    (``regressed`` if either is), which is ``contended`` when either side shared its
    CPU/GPU in any repeat; then a PSNR drop, which is ``regressed`` whatever the speed.
    """
    first_b, first_n = b_rows.iloc[0], n_rows.iloc[0]
    out: dict[str, Any] = {c: first_n[c] if not pd.isna(first_n[c]) else first_b[c] for c in KEY}
    workload = workload_of(first_n)
    text, values = _settings(b_rows, n_rows)
    new_tokens = values.get("new_tokens")
    metric = headline(workload)
    contended_b, contended_n = bool(_contended(b_rows).any()), bool(_contended(n_rows).any())
    batch = int(out["batch_size"])
    p50_b, p50_n = _p50(b_rows, b_reps), _p50(n_rows, n_reps)
    out.update(
        workload=workload, settings=text,
        host_base=", ".join(_unique(b_rows["host"])), host_new=", ".join(_unique(n_rows["host"])),
        status_base=_statuses(b_rows), status_new=_statuses(n_rows),
        runs_base=len(b_rows), runs_new=len(n_rows),
        n_base=sum(len(r) for r in b_reps), n_new=sum(len(r) for r in n_reps),
        p50_ms_base=p50_b, p50_ms_new=p50_n,
        **_ratio_columns("latency", None), **_ratio_columns("throughput", None),
        headline=metric.name, headline_base=_headline_value(workload, p50_b, batch, new_tokens),
        headline_new=_headline_value(workload, p50_n, batch, new_tokens), **_ratio_columns("headline", None),
        headline_speed="", tpot_ms_base=math.nan, tpot_ms_new=math.nan, **_ratio_columns("tpot", None),
        tpot_speed="", psnr_db_base=_worst_psnr(b_rows), psnr_db_new=_worst_psnr(n_rows), psnr_drop_db=math.nan,
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

    judged: list[SpeedJudgement] = [judge_speed(b_reps, n_reps, settings, metric)]
    main = judged[0]
    if main.ci is not None:
        ci = main.ci
        out.update(
            **_ratio_columns("latency", ci),
            **_ratio_columns("throughput", RatioCI(1 / ci.ratio, 1 / ci.hi, 1 / ci.lo)),
        )
    out.update(**_ratio_columns("headline", main.metric_ci), headline_speed=main.speed)
    if workload == "generate" and new_tokens is not None and new_tokens >= 2:
        b_t, n_t = b_tpots or [], n_tpots or []
        tpot = judge_speed(b_t, n_t, settings, tpot_metric(int(new_tokens)))
        judged.append(tpot)
        out.update(
            tpot_ms_base=_tpot_ms(b_rows, b_t), tpot_ms_new=_tpot_ms(n_rows, n_t),
            **_ratio_columns("tpot", tpot.ci), tpot_speed=tpot.speed,
        )  # fmt: skip
    out["drift_allowance"] = max(j.drift for j in judged)
    speed = combined_speed([j.speed for j in judged])
    reasons = [reason for j in judged for reason in j.reasons]
    if len(judged) > 1 and speed in ("regressed", "improved"):
        which = [j.metric.name for j in judged if j.speed == speed]
        reasons.insert(0, f"{' and '.join(which)} {speed}")
    if contended_b or contended_n:
        speed = "contended"
        out["headline_speed"] = "contended"
        if out["tpot_speed"]:
            out["tpot_speed"] = "contended"
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
    matches = match_cells(base.cells, new.cells)
    if not matches.pairs:
        differ = [why for _, _, why in matches.mismatched]
        also = f" ({len(differ)} cells differ: {differ[0]})" if differ else ""
        raise RunError(
            f"BASE and NEW have no cell in common{also}: BASE has {_describe(base.cells)}; "
            f"NEW has {_describe(new.cells)}"
        )
    b_samples, n_samples = base.samples_by_cell(), new.samples_by_cell()
    b_tpots, n_tpots = base.tpot_by_cell(), new.tpot_by_cell()
    rows = [
        judge(
            base.cells.iloc[b],
            new.cells.iloc[n],
            _repeats(base.cells, b, b_samples),
            _repeats(new.cells, n, n_samples),
            settings,
            _repeats(base.cells, b, b_tpots),
            _repeats(new.cells, n, n_tpots),
        )  # fmt: skip
        for b, n in matches.pairs
    ]
    pairs = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    return Comparison(
        base_name=base.name, new_name=new.name, settings=settings, pairs=pairs,
        only_base=base.cells.iloc[matches.only_base].reset_index(drop=True),
        only_new=new.cells.iloc[matches.only_new].reset_index(drop=True), notes=_notes(base, new, pairs, settings),
        hardware_differences=fingerprint_differences(base.env, new.env),
        different_hardware=different_hardware(base.env, new.env),
        mismatched=_mismatched(base, new, matches.mismatched),
    )  # fmt: skip


def _mismatched(base: Run, new: Run, mismatched: list[tuple[list[int], list[int], str]]) -> pd.DataFrame:
    """One row per pair of cells not compared: its key, each side's workload and settings, the difference."""
    records = []
    for b, n, why in mismatched:
        row_b, row_n = base.cells.iloc[b[0]], new.cells.iloc[n[0]]
        records.append(
            {
                **{c: row_n[c] if not pd.isna(row_n[c]) else row_b[c] for c in KEY},
                "workload_base": workload_of(row_b), "workload_new": workload_of(row_n),
                "settings_base": settings_text(row_b), "settings_new": settings_text(row_n),
                "host_base": ", ".join(_unique(base.cells.iloc[b]["host"])),
                "host_new": ", ".join(_unique(new.cells.iloc[n]["host"])), "why": why,
            }
        )  # fmt: skip
    return pd.DataFrame(records, columns=MISMATCH_COLUMNS)


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
    generate = pairs[pairs["tpot_speed"].astype(str) != ""] if len(pairs) else pairs
    if len(generate):
        notes.append(
            f"{len(generate)} generate pairs are judged on output tokens/s (of whole generations) and on TPOT "
            "(the mean decode step of each generation, from samples.csv): either one regressing is a regression"
        )
    for label, run in (("BASE", base), ("NEW", new)):
        if run.samples.empty:
            notes.append(f"{label} has no raw samples (samples.csv): its ok cells can only be noisy")
    return notes

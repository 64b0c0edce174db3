"""Compare two runs cell by cell: speed ratios with confidence intervals, fidelity, status, verdict.

Matching. Cells are joined on their key (model, size, pipeline, runtime,
device_name, batch_size, precision). A cell that did not run has no runtime or
precision, so leftover cells are matched once more on the key without those two;
that is how ``ok -> error`` is seen as one cell that broke rather than as two
one-sided cells. Cells found on one side only are listed, never dropped
silently. Several rows with the same key on one side (a merged folder holding
repeated runs, or identical machines) are *repeats* of that cell and are pooled.

Statistics. For each pair of ``ok`` cells the latency ratio is
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.results.merge import Run, RunError

KEY: tuple[str, ...] = ("model", "size", "pipeline", "runtime", "device_name", "batch_size", "precision")
LOOSE_KEY: tuple[str, ...] = ("model", "size", "pipeline", "device_name", "batch_size")
VERDICTS = ("regressed", "improved", "noisy", "unchanged")
MIN_SAMPLES = 5
PSNR_CEILING_DB = 100.0
VERDICT_STYLE = {"regressed": "bold red", "improved": "green", "noisy": "yellow", "unchanged": "dim"}

Key = tuple[Any, ...]


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


# ------------------------------------------------------------------ matching
def _key_of(row: pd.Series, cols: tuple[str, ...]) -> Key:
    return tuple(
        None if pd.isna(row[c]) else (int(row[c]) if c == "batch_size" else str(row[c])) for c in cols
    )


def _groups(cells: pd.DataFrame, cols: tuple[str, ...]) -> dict[Key, list[int]]:
    """Key -> row positions (repeats of one cell share a key), in first-seen order."""
    groups: dict[Key, list[int]] = {}
    for i, (_, row) in enumerate(cells.iterrows()):
        groups.setdefault(_key_of(row, cols), []).append(i)
    return groups


def match_cells(
    base: pd.DataFrame, new: pd.DataFrame
) -> tuple[list[tuple[list[int], list[int]]], list[int], list[int]]:
    """Matched (BASE rows, NEW rows) groups, then the row positions found on one side only."""
    base_groups, new_groups = _groups(base, KEY), _groups(new, KEY)
    pairs = [(rows, new_groups[k]) for k, rows in base_groups.items() if k in new_groups]
    left_base = {k: rows for k, rows in base_groups.items() if k not in new_groups}
    left_new = {k: rows for k, rows in new_groups.items() if k not in base_groups}

    # A cell that did not run has no runtime/precision, so its key differs from its ok repeats'.
    # First, a repeat that did not run joins the pair of its ok repeats (one pair per loose key)...
    by_loose: dict[Key, list[int]] = {}
    for index, (b_rows, _) in enumerate(pairs):
        by_loose.setdefault(_key_of(base.iloc[b_rows[0]], LOOSE_KEY), []).append(index)
    for side, left, cells in ((0, left_base, base), (1, left_new, new)):
        for k, rows in list(left.items()):
            target = by_loose.get(_key_of(cells.iloc[rows[0]], LOOSE_KEY), [])
            if len(target) == 1 and (cells.iloc[rows]["status"] != "ok").all():
                pairs[target[0]][side].extend(rows)
                del left[k]

    # ...then leftovers pair on the rest of the key, where one side did not run and each side
    # has exactly one leftover cell with that loose key.
    def loose(left: dict[Key, list[int]], cells: pd.DataFrame) -> dict[Key, list[Key]]:
        out: dict[Key, list[Key]] = {}
        for k, rows in left.items():
            out.setdefault(_key_of(cells.iloc[rows[0]], LOOSE_KEY), []).append(k)
        return out

    loose_new = loose(left_new, new)
    for lk, base_keys in loose(left_base, base).items():
        new_keys = loose_new.get(lk, [])
        if len(base_keys) == 1 and len(new_keys) == 1:
            b_rows, n_rows = left_base[base_keys[0]], left_new[new_keys[0]]
            statuses = set(base.iloc[b_rows]["status"]) | set(new.iloc[n_rows]["status"])
            if statuses != {"ok"}:
                pairs.append((b_rows, n_rows))
                del left_base[base_keys[0]], left_new[new_keys[0]]
    only_base = sorted(i for rows in left_base.values() for i in rows)
    only_new = sorted(i for rows in left_new.values() for i in rows)
    return pairs, only_base, only_new


# ------------------------------------------------------------------ comparison
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

    def table(self) -> pd.DataFrame:
        """Every row, pairs and one-sided cells alike, for --csv."""
        records = self.pairs.to_dict(orient="records")
        for frame, side in ((self.only_base, "base"), (self.only_new, "new")):
            for _, row in frame.iterrows():
                records.append(
                    {
                        **{c: row[c] for c in KEY},
                        f"host_{side}": row["host"],
                        f"status_{side}": row["status"],
                        f"p50_ms_{side}": row["latency_ms_p50"],
                        "verdict": f"{side} only",
                        "why": f"no matching cell in {'NEW' if side == 'base' else 'BASE'}",
                    }
                )
        return pd.DataFrame(records, columns=PAIR_COLUMNS)


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
            f"PSNR {_db(out['psnr_db_base'])} -> {_db(out['psnr_db_new'])} dB: "
            f"a drop beyond {settings.max_psnr_drop_db:g} dB",
        )
    out["verdict"] = verdict
    out["why"] = "; ".join(reasons)
    return out


def _unique(values: pd.Series) -> list[str]:
    return list(dict.fromkeys(str(v) for v in values.dropna()))


def _db(value: float) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "exact" if value > 0 else "non-finite"
    return f"{value:.1f}"


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


# ------------------------------------------------------------------ output
ORDER = {"regressed": 0, "improved": 1, "noisy": 2, "unchanged": 3}


def _sorted(pairs: pd.DataFrame) -> pd.DataFrame:
    rank = pairs["verdict"].map(ORDER)
    return (
        pairs.assign(_rank=rank)
        .sort_values(["_rank", "model", "size", "batch_size", "pipeline"])
        .drop(columns="_rank")
    )


def _ratio_text(row: Any) -> str:
    if pd.isna(row.latency_ratio):
        return "-"
    return f"x{row.latency_ratio:.3g} [{row.latency_ratio_lo:.3g}, {row.latency_ratio_hi:.3g}]"


def _ms(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.3g}"


def _psnr_text(row: Any) -> str:
    if pd.isna(row.psnr_db_base) and pd.isna(row.psnr_db_new):
        return "-"
    return f"{_db(row.psnr_db_base)} -> {_db(row.psnr_db_new)}"


def _cell_name(row: Any) -> str:
    runtime = "" if pd.isna(row.runtime) else f" ({row.runtime})"
    return f"{row.model}/{row.size} {row.pipeline}{runtime} b{row.batch_size}"


def _header(cmp: Comparison) -> str:
    s = cmp.settings
    return (
        f"{cmp.base_name} -> {cmp.new_name}: threshold {s.threshold:.0%}, max PSNR drop {s.max_psnr_drop_db:g} dB, "
        f"{s.confidence:.0%} bootstrap interval of the median latency ratio"
    )


def _pair_cells(row: Any) -> list[str]:
    tp = "-" if pd.isna(row.throughput_ratio) else f"x{row.throughput_ratio:.3g}"
    return [
        _cell_name(row), str(row.device_name), _ms(row.p50_ms_base), _ms(row.p50_ms_new), _ratio_text(row), tp,
        _psnr_text(row), str(row.verdict), str(row.why),
    ]  # fmt: skip


PAIR_HEADERS = [
    "cell",
    "device",
    "p50 ms base",
    "p50 ms new",
    "latency ratio [95% CI]",
    "items/s",
    "PSNR dB",
    "verdict",
    "why",
]
RIGHT = {"p50 ms base", "p50 ms new", "latency ratio [95% CI]", "items/s", "PSNR dB"}


def _one_sided(cmp: Comparison) -> list[list[str]]:
    rows = []
    for side, frame in (("only in BASE", cmp.only_base), ("only in NEW", cmp.only_new)):
        for row in frame.itertuples(index=False):
            rows.append([side, _cell_name(row), str(row.device_name), str(row.host), str(row.status)])
    return rows


def console_tables(cmp: Comparison) -> list[Any]:
    """Rich tables: the pairs (worst first), then the one-sided cells, if any."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=escape(_header(cmp)),
        title_justify="left",
        caption=escape(cmp.summary_line()),
        caption_justify="left",
    )
    for col in PAIR_HEADERS:
        table.add_column(col, justify="right" if col in RIGHT else "left")
    for row in _sorted(cmp.pairs).itertuples(index=False):
        cells = [escape(c) for c in _pair_cells(row)]
        cells[7] = f"[{VERDICT_STYLE.get(row.verdict, 'white')}]{cells[7]}[/]"
        table.add_row(*cells)
    tables: list[Any] = [table]
    one_sided = _one_sided(cmp)
    if one_sided:
        extra = Table(title="cells on one side only (not compared)", title_justify="left")
        for col in ("side", "cell", "device", "host", "status"):
            extra.add_column(col)
        for row in one_sided:
            extra.add_row(*(escape(c) for c in row))
        tables.append(extra)
    return tables


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def to_markdown(cmp: Comparison) -> str:
    """GitHub-flavoured Markdown: for a CI job summary or a PR comment."""
    status = "REGRESSION" if cmp.regressed else "no regression"
    lines = [f"### genbench compare: {status}", "", _header(cmp), "", f"**{cmp.summary_line()}**", ""]
    if cmp.notes:
        lines += [f"- {note}" for note in cmp.notes] + [""]
    lines += [
        _md_row(PAIR_HEADERS),
        "|" + "|".join("--:" if h in RIGHT else "---" for h in PAIR_HEADERS) + "|",
    ]
    for row in _sorted(cmp.pairs).itertuples(index=False):
        cells = _pair_cells(row)
        if row.verdict == "regressed":
            cells[7] = "**regressed**"
        lines.append(_md_row(cells))
    one_sided = _one_sided(cmp)
    if one_sided:
        lines += [
            "",
            "Cells on one side only, not compared:",
            "",
            _md_row(["side", "cell", "device", "host", "status"]),
        ]
        lines.append("|---|---|---|---|---|")
        lines += [_md_row(row) for row in one_sided]
    return "\n".join(lines) + "\n"


def to_csv(cmp: Comparison, path: Path) -> None:
    """Every pair and one-sided cell, one row each, numbers unrounded."""
    cmp.table().to_csv(path, index=False)

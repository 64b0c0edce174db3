"""A comparison written out: console tables (worst first), Markdown for CI, CSV with every number.

The console table fits the console: the "why" of each verdict is a numbered note
under the table (most cells share a handful of reasons), one device is named in
the title rather than on every row, and at a narrow width the throughput ratio
(the latency ratio's inverse), the runtime and the p50s are left out before the
verdict, its interval and the PSNR. Markdown (a PR comment, a job summary) and
the CSV keep every column.

The ratio column is each workload's headline (bench.analysis.verdict): named in its
header when every pair shares one (``latency ratio``, ``tokens/s ratio``), else named
on each row; a generation's TPOT ratio has a column of its own. The p50s are of whole
calls (a forward call, a generation, a sampling run). Pairs not compared because
their workload settings differ are one line each under the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.analysis.compare import NOT_COMPARED, PAIR_COLUMNS, Comparison
from bench.analysis.matching import KEY, settings_text, workload_of
from bench.analysis.verdict import VERDICTS
from bench.core.numbers import num, psnr, ratio
from bench.render.markdown import Markup, md_text, table_lines
from bench.render.tables import Column, Notes, below, fit_table

VERDICT_STYLE = {
    "regressed": "bold red", "contended": "magenta", "improved": "green", "noisy": "yellow", "unchanged": "dim",
}  # fmt: skip
ORDER = {verdict: rank for rank, verdict in enumerate(VERDICTS)}
CSV_HINT = "--csv FILE writes every column"


def _sorted(pairs: pd.DataFrame) -> pd.DataFrame:
    rank = pairs["verdict"].map(ORDER)
    return (
        pairs.assign(_rank=rank)
        .sort_values(["_rank", "model", "size", "batch_size", "pipeline"])
        .drop(columns="_rank")
    )


def _interval(value: Any, lo: Any, hi: Any) -> str:
    if pd.isna(value):
        return "-"
    return f"{ratio(value)} [{ratio(lo)}, {ratio(hi)}]"


def _headlines(pairs: pd.DataFrame) -> list[str]:
    """The headline metrics of the pairs, in first-seen order ('latency' for pairs from older tables)."""
    names = pairs["headline"].fillna("latency") if "headline" in pairs.columns else pd.Series(["latency"])
    return list(dict.fromkeys(str(n) for n in names)) or ["latency"]


def _ratio_header(pairs: pd.DataFrame, sep: str) -> str:
    names = _headlines(pairs)
    return f"{names[0] if len(names) == 1 else 'headline'} ratio{sep}[95% CI]"


def _ratio_text(row: Any, named: bool = False) -> str:
    """The headline ratio with its interval; ``named`` puts the metric first (pairs of several workloads)."""
    text = _interval(row.headline_ratio, row.headline_ratio_lo, row.headline_ratio_hi)
    return f"{row.headline} {text}" if named and text != "-" else text


def _tpot_text(row: Any) -> str:
    return _interval(row.tpot_ratio, row.tpot_ratio_lo, row.tpot_ratio_hi)


def _has_tpot(pairs: pd.DataFrame) -> bool:
    return bool((pairs["workload"] == "generate").any()) if len(pairs) else False


def _psnr_text(row: Any) -> str:
    if pd.isna(row.psnr_db_base) and pd.isna(row.psnr_db_new):
        return "-"
    return f"{psnr(row.psnr_db_base)} -> {psnr(row.psnr_db_new)}"


def _cell_name(row: Any, runtime: bool = True) -> str:
    shown = f" ({row.runtime})" if runtime and not pd.isna(row.runtime) else ""
    return f"{row.model}/{row.size} {row.pipeline}{shown} b{row.batch_size}"


def _header(cmp: Comparison) -> str:
    s = cmp.settings
    names = _headlines(cmp.pairs) + (["TPOT"] if _has_tpot(cmp.pairs) else [])
    what = (
        f"{names[0]} ratio" if len(names) == 1 else f"ratio of each workload's headline ({', '.join(names)})"
    )
    return (
        f"{cmp.base_name} -> {cmp.new_name}: threshold {s.threshold:.0%}, max PSNR drop {s.max_psnr_drop_db:g} dB, "
        f"{s.confidence:.0%} bootstrap interval of the median {what}"
    )


def _mismatch_lines(cmp: Comparison, runtime: bool = True) -> list[str]:
    """'not compared: gpt/tiny fp32 b1: different workload settings (new_tokens 32 vs 128)', one per pair."""
    return [
        f"not compared: {_cell_name(row, runtime)}: {row.why}"
        for row in cmp.mismatched.itertuples(index=False)
    ]


def _throughput_text(row: Any) -> str:
    return ratio(row.throughput_ratio)


def _one_sided(cmp: Comparison, runtime: bool = True) -> list[list[str]]:
    rows = []
    for side, frame in (("only in BASE", cmp.only_base), ("only in NEW", cmp.only_new)):
        for row in frame.itertuples(index=False):
            rows.append(
                [side, _cell_name(row, runtime), str(row.device_name), str(row.host), str(row.status)]
            )
    return rows


# ------------------------------------------------------------------ console
def console_tables(cmp: Comparison, width: int = 140) -> list[Any]:
    """Rich renderables for a console ``width`` wide: the pairs (worst first), their notes, then
    the one-sided cells, if any."""
    from rich.text import Text

    pairs = _sorted(cmp.pairs)
    devices = list(dict.fromkeys(str(d) for d in pairs["device_name"]))
    one_device = len(devices) == 1
    notes = Notes()
    named, tpot = len(_headlines(pairs)) > 1, _has_tpot(pairs)
    columns = [
        Column("cell", min_width=24),
        Column("runtime", fixed=True, drop=5),
        *([] if one_device else [Column("device", drop=2)]),
        Column.number("p50 ms base", drop=3),
        Column.number("p50 ms new", drop=3),
        Column.number(_ratio_header(pairs, "\n")),
        *([Column.number("TPOT ratio\n[95% CI]", drop=1)] if tpot else []),
        Column.number("items/s ratio", drop=4),
        Column.number("PSNR dB", drop=1),
        Column("verdict", fixed=True),
        Column("why", fixed=True),
    ]
    rows = []
    for row in pairs.itertuples(index=False):
        rows.append(
            [
                _cell_name(row, runtime=False), "-" if pd.isna(row.runtime) else str(row.runtime),
                *([] if one_device else [str(row.device_name)]),
                num(row.p50_ms_base), num(row.p50_ms_new), _ratio_text(row, named),
                *([_tpot_text(row)] if tpot else []), _throughput_text(row),
                _psnr_text(row), Text(str(row.verdict), style=VERDICT_STYLE.get(row.verdict, "")),
                notes.ref(str(row.why)),
            ]
        )  # fmt: skip
    title = _header(cmp) + (f"; on {devices[0]}" if one_device else "")
    table, left_out = fit_table(
        columns, rows, width, elsewhere=CSV_HINT, title=Text(title), title_justify="left",
        caption=Text(cmp.summary_line()), caption_justify="left",
    )  # fmt: skip
    out: list[Any] = [table, *below(*notes.lines(), left_out)]
    mismatched = _mismatch_lines(cmp, runtime=False)
    if mismatched:
        out += below(*mismatched)
    one_sided = _one_sided(cmp, runtime=False)
    if one_sided:
        extra, extra_left_out = fit_table(
            [Column("side", fixed=True), Column("cell"), Column("device", drop=2), Column("host", drop=1),
             Column("status", fixed=True)],
            one_sided, width, elsewhere=CSV_HINT, title="cells on one side only (not compared)",
            title_justify="left",
        )  # fmt: skip
        out += [extra, *below(extra_left_out)]
    return out


# ------------------------------------------------------------------ Markdown
PAIR_HEADERS = [
    "cell", "device", "p50 ms base", "p50 ms new", "latency ratio [95% CI]", "items/s", "PSNR dB", "verdict", "why",
]  # fmt: skip
PAIR_ALIGN = ["l", "l", "r", "r", "r", "r", "r", "l", "l"]


def _markdown_name(row: Any) -> str:
    settings = "" if pd.isna(row.settings) or not row.settings else f" ({row.settings})"
    return _cell_name(row) + settings


def to_markdown(cmp: Comparison) -> str:
    """GitHub-flavoured Markdown: for a CI job summary or a PR comment.

    Run names, device names, hosts, notes and reasons come from run folders: every one goes
    through ``md_text`` (tables escape their cells), so none can inject HTML or break a table.
    """
    status = "REGRESSION" if cmp.regressed else "no regression"
    lines = [
        f"### genbench compare: {status}", "", md_text(_header(cmp)), "", f"**{md_text(cmp.summary_line())}**", "",
    ]  # fmt: skip
    if cmp.notes:
        lines += [f"- {md_text(note)}" for note in cmp.notes] + [""]
    rows: list[list[object]] = []
    pairs = _sorted(cmp.pairs)
    named, tpot = len(_headlines(pairs)) > 1, _has_tpot(pairs)
    for row in pairs.itertuples(index=False):
        verdict = Markup("**regressed**") if row.verdict == "regressed" else str(row.verdict)
        rows.append(
            [
                _markdown_name(row), str(row.device_name), num(row.p50_ms_base), num(row.p50_ms_new),
                _ratio_text(row, named), *([_tpot_text(row)] if tpot else []), _throughput_text(row),
                _psnr_text(row), verdict, str(row.why),
            ]
        )  # fmt: skip
    headers = [
        *PAIR_HEADERS[:4],
        _ratio_header(pairs, " "),
        *(["TPOT ratio [95% CI]"] if tpot else []),
        *PAIR_HEADERS[5:],
    ]
    align = [*PAIR_ALIGN[:5], *(["r"] if tpot else []), *PAIR_ALIGN[5:]]
    lines += table_lines(headers, rows, align)
    mismatched = _mismatch_lines(cmp)
    if mismatched:
        lines += ["", "Cells with other workload settings on each side, not compared:", ""]
        lines += [f"- {md_text(line.removeprefix('not compared: '))}" for line in mismatched]
    one_sided = _one_sided(cmp)
    if one_sided:
        lines += ["", "Cells on one side only, not compared:", ""]
        lines += table_lines(["side", "cell", "device", "host", "status"], one_sided)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ CSV
def csv_table(cmp: Comparison) -> pd.DataFrame:
    """Every row, pairs and one-sided cells alike, numbers unrounded."""
    records = cmp.pairs.to_dict(orient="records")
    for frame, side in ((cmp.only_base, "base"), (cmp.only_new, "new")):
        for _, row in frame.iterrows():
            records.append(
                {
                    **{c: row[c] for c in KEY},
                    "workload": workload_of(row),
                    "settings": settings_text(row),
                    f"host_{side}": row["host"],
                    f"status_{side}": row["status"],
                    f"p50_ms_{side}": row["latency_ms_p50"],
                    "verdict": f"{side} only",
                    "why": f"no matching cell in {'NEW' if side == 'base' else 'BASE'}",
                }
            )
    for row in cmp.mismatched.itertuples(index=False):
        records.append(
            {
                **{c: getattr(row, c) for c in KEY},
                "workload": row.workload_new if row.workload_base == row.workload_new else "",
                "settings": f"{row.settings_base} vs {row.settings_new}",
                "host_base": row.host_base,
                "host_new": row.host_new,
                "verdict": NOT_COMPARED,
                "why": row.why,
            }
        )
    return pd.DataFrame(records, columns=PAIR_COLUMNS)


def to_csv(cmp: Comparison, path: Path) -> None:
    """Every pair and one-sided cell, one row each, numbers unrounded."""
    csv_table(cmp).to_csv(path, index=False)

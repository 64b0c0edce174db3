"""A comparison written out: console tables (worst first), Markdown for CI, CSV with every number.

The console table fits the console: the "why" of each verdict is a numbered note
under the table (most cells share a handful of reasons), one device is named in
the title rather than on every row, and at a narrow width the throughput ratio
(the latency ratio's inverse), the runtime and the p50s are left out before the
verdict, its interval and the PSNR. Markdown (a PR comment, a job summary) and
the CSV keep every column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.analysis.compare import PAIR_COLUMNS, Comparison
from bench.analysis.matching import KEY
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


def _ratio_text(row: Any) -> str:
    if pd.isna(row.latency_ratio):
        return "-"
    return f"{ratio(row.latency_ratio)} [{ratio(row.latency_ratio_lo)}, {ratio(row.latency_ratio_hi)}]"


def _psnr_text(row: Any) -> str:
    if pd.isna(row.psnr_db_base) and pd.isna(row.psnr_db_new):
        return "-"
    return f"{psnr(row.psnr_db_base)} -> {psnr(row.psnr_db_new)}"


def _cell_name(row: Any, runtime: bool = True) -> str:
    shown = f" ({row.runtime})" if runtime and not pd.isna(row.runtime) else ""
    return f"{row.model}/{row.size} {row.pipeline}{shown} b{row.batch_size}"


def _header(cmp: Comparison) -> str:
    s = cmp.settings
    return (
        f"{cmp.base_name} -> {cmp.new_name}: threshold {s.threshold:.0%}, max PSNR drop {s.max_psnr_drop_db:g} dB, "
        f"{s.confidence:.0%} bootstrap interval of the median latency ratio"
    )


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
    columns = [
        Column("cell", min_width=24),
        Column("runtime", fixed=True, drop=5),
        *([] if one_device else [Column("device", drop=2)]),
        Column.number("p50 ms base", drop=3),
        Column.number("p50 ms new", drop=3),
        Column.number("latency ratio\n[95% CI]"),
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
                num(row.p50_ms_base), num(row.p50_ms_new), _ratio_text(row), _throughput_text(row),
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
    for row in _sorted(cmp.pairs).itertuples(index=False):
        verdict = Markup("**regressed**") if row.verdict == "regressed" else str(row.verdict)
        rows.append(
            [
                _cell_name(row), str(row.device_name), num(row.p50_ms_base), num(row.p50_ms_new), _ratio_text(row),
                _throughput_text(row), _psnr_text(row), verdict, str(row.why),
            ]
        )  # fmt: skip
    lines += table_lines(PAIR_HEADERS, rows, PAIR_ALIGN)
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
                    f"host_{side}": row["host"],
                    f"status_{side}": row["status"],
                    f"p50_ms_{side}": row["latency_ms_p50"],
                    "verdict": f"{side} only",
                    "why": f"no matching cell in {'NEW' if side == 'base' else 'BASE'}",
                }
            )
    return pd.DataFrame(records, columns=PAIR_COLUMNS)


def to_csv(cmp: Comparison, path: Path) -> None:
    """Every pair and one-sided cell, one row each, numbers unrounded."""
    csv_table(cmp).to_csv(path, index=False)

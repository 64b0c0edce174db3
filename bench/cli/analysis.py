"""Sub-commands that read finished runs (compare, report, merge, baseline).

``register`` adds their parsers and returns name -> handler for bench.cli. A
run that cannot be read and a bad option value raise ``RunError``, a
``UsageError``: one line on stderr, exit code 2. Exit code 1 is kept
for "the comparison found a regression" (with ``--fail-on-regression``) and for a
machine that refuses a write (``EnvironmentProblem``: a read-only or full disk),
so CI can tell a slower build from a broken invocation.

Before any table, ``compare``, ``baseline check``, ``report`` (of several runs) and
``merge`` print how the machines of the runs differ (bench.analysis.fingerprint_diff),
on stdout like the tables. A comparison across different hardware is labelled so
(before the table and in its Markdown), and ``--fail-on-regression`` does not fail on
it unless ``--allow-different-hardware``: a nightly that lands on another machine
class would otherwise report the machine as a regression of the code.

No output file may be one of an input run's own files (its tables, env.json,
manifest.json): ``report --markdown RUN/cells.csv`` would destroy the run it reads.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cli.common import wide_console
from bench.core.errors import EnvironmentProblem, RunError

Handler = Callable[[argparse.Namespace], int]

COMPARE_EXAMPLES = """examples:
  python -m bench compare results/base results/new
  python -m bench compare base/cells.csv new/cells.csv --threshold 10% --markdown summary.md --fail-on-regression
  python -m bench compare results/base-merged results/new-merged --csv verdicts.csv   # repeats pooled
"""
REPORT_EXAMPLES = """examples:
  python -m bench report results/cpu-run results/gpu-run --html report.html
  python -m bench report results/merged --html report.html --markdown report.md
"""
MERGE_EXAMPLES = """example:
  python -m bench merge results/host-a results/host-b --out results/merged

--out must be a new folder, an empty one, or one holding only files merge writes
(cells.csv, cells.parquet, cells.json, samples.csv, env.json, manifest.json), which
--force replaces. A folder holding anything else is refused, and so are source tables
with columns this genbench does not know (merge would lose them).
"""
BASELINE_EXAMPLES = """examples:
  python -m bench baseline save results/nightly            # NAME: this machine class
  python -m bench baseline check results/nightly --markdown summary.md --fail-on-regression
  python -m bench baseline list
"""


#: files of a run folder an output must never replace: the tables (bench.results.store) and the manifest
RUN_FILES = ("cells.csv", "cells.parquet", "cells.json", "samples.csv", "env.json", "manifest.json")
DIFFERENT_HARDWARE = "different hardware: BASE and NEW ran on different machines, so the ratios compare machines as well as code"


def _write_error(path: Path | str, exc: OSError) -> Exception:
    """An output that cannot be written: a path the user got wrong (a folder, a missing parent) is
    bad input (RunError, exit 2); a machine that refuses (permission, read-only, full) is an
    EnvironmentProblem (exit 1). Either is one line naming the path."""
    message = f"cannot write {path}: {exc.strerror or exc}"
    if isinstance(exc, IsADirectoryError | NotADirectoryError | FileNotFoundError):
        return RunError(message)
    return EnvironmentProblem(message)


def _write(path: Path, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _write_error(path, exc) from None


def check_outputs(outputs: dict[str, Path | None], runs: list[Any]) -> None:
    """Refuse an output that is one of an input run's own files, or two outputs naming one file.

    ``outputs`` maps the flag (``--markdown``) to its path; paths are compared resolved, so
    ``RUN/./cells.csv`` and a symlink to it are caught too.
    """
    own: dict[Path, str] = {}
    for run in runs:
        for name in RUN_FILES:
            own.setdefault((Path(run.path) / name).resolve(), f"run {run.path}'s own {name}")
    seen: dict[Path, str] = {}
    for flag, path in outputs.items():
        if path is None:
            continue
        resolved = Path(path).resolve()
        if resolved in own:
            raise RunError(f"{flag} {path} is {own[resolved]}: writing it would destroy that run")
        if resolved in seen:
            raise RunError(f"{seen[resolved]} and {flag} both name {path}")
        seen[resolved] = flag


def say_differences(base: Any, new: Any) -> list[str]:
    """Print how the machines of runs ``base`` and ``new`` differ, under one heading; returns the lines."""
    from bench.analysis.fingerprint_diff import fingerprint_differences

    lines = fingerprint_differences(base.env, new.env)
    if lines:
        print(f"machine differences, {base.name} (BASE) -> {new.name} (NEW):")
        for line in lines:
            print(f"  {line}")
    return lines


# ------------------------------------------------------------------ compare
def _add_compare_options(p: argparse.ArgumentParser, default_threshold: str) -> None:
    p.add_argument(
        "--threshold", default=default_threshold,
        help=f"smallest latency change that counts, e.g. 5%% or 0.05 (default: {default_threshold.replace('%', '%%')})",
    )  # fmt: skip
    p.add_argument(
        "--max-psnr-drop", type=float, default=1.0, metavar="DB",
        help="a PSNR drop beyond this many dB is a regression (default: 1)",
    )  # fmt: skip
    p.add_argument(
        "--min-change-ms", type=float, default=0.0, metavar="MS",
        help="a speed change must also exceed this many ms of p50 latency (default: 0); "
        "keeps sub-millisecond cells on shared machines from crying wolf",
    )  # fmt: skip
    p.add_argument(
        "--markdown", type=Path, metavar="FILE", help="write the verdicts as Markdown (CI job summary, PR)"
    )
    p.add_argument("--csv", type=Path, metavar="FILE", help="write every verdict as CSV")
    p.add_argument(
        "--fail-on-regression", action="store_true",
        help="exit with code 1 when any cell regressed (not when BASE and NEW ran on different hardware)",
    )  # fmt: skip
    p.add_argument(
        "--allow-different-hardware", action="store_true",
        help="let --fail-on-regression fail even when the two runs' hardware differs",
    )  # fmt: skip
    p.add_argument(
        "--no-drift-allowance", action="store_false", dest="drift_allowance",
        help="judge by the bootstrap interval alone, without the measured run-to-run drift allowance "
        "(for a quiet, dedicated machine; see bench/analysis/verdict.py)",
    )  # fmt: skip


def _settings(args: argparse.Namespace) -> Any:
    from bench.analysis.compare import Settings, parse_threshold

    try:
        return Settings(
            threshold=parse_threshold(args.threshold),
            max_psnr_drop_db=args.max_psnr_drop,
            min_change_ms=args.min_change_ms,
            drift_allowance=args.drift_allowance,
        )
    except ValueError as exc:
        raise RunError(str(exc)) from None


def _compare_and_report(base: Any, new: Any, args: argparse.Namespace) -> int:
    """Compare, print the machine differences and then the tables, write the files asked for; the exit code."""
    from bench.analysis.compare import compare_runs
    from bench.analysis.fingerprint_diff import different_hardware
    from bench.render.compare import console_tables, to_csv, to_markdown

    check_outputs({"--markdown": args.markdown, "--csv": args.csv}, [base, new])
    comparison = compare_runs(base, new, _settings(args))
    differences = say_differences(base, new)
    different = different_hardware(base.env, new.env)
    stands_down = different and comparison.regressed and not args.allow_different_hardware
    if different:
        print(DIFFERENT_HARDWARE)
        # The Markdown renderer prints Comparison.notes under its summary: the label and the lines go there.
        label = f"**{DIFFERENT_HARDWARE}**"
        if stands_down and args.fail_on_regression:
            label += " (--fail-on-regression does not fail on it; --allow-different-hardware does)"
        shown = [label, *(f"machine: {line}" for line in differences)]
        comparison.notes = [*shown, *(n for n in comparison.notes if n not in shown)]
    elif differences:
        shown = [f"machine: {line}" for line in differences]
        comparison.notes = [*shown, *(n for n in comparison.notes if n not in shown)]
    else:
        shown = []
    from rich.markup import escape

    console = wide_console()
    for renderable in console_tables(comparison, console.width):
        console.print(renderable)
    for note in comparison.notes:
        if note not in shown:  # printed above the table already
            console.print(f"[yellow]note:[/] {escape(note)}")  # notes carry run names: never markup
    if args.markdown is not None:
        _write(args.markdown, to_markdown(comparison))
    if args.csv is not None:
        try:
            to_csv(comparison, args.csv)
        except OSError as exc:
            raise _write_error(args.csv, exc) from None
    if not comparison.regressed:
        return 0
    if stands_down:
        console.print(
            "[bold red]regression[/], on different hardware"
            + (
                ": not failing, the hardware changed as well as the code (pass --allow-different-hardware to fail)"
                if args.fail_on_regression
                else ""
            )
        )
        return 0
    console.print(
        "[bold red]regression[/]" + (": failing (--fail-on-regression)" if args.fail_on_regression else "")
    )
    return 1 if args.fail_on_regression else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.results.store import load_run

    return _compare_and_report(load_run(args.base), load_run(args.new), args)


# ------------------------------------------------------------------ report
def cmd_report(args: argparse.Namespace) -> int:
    from bench.results.store import load_run

    if args.html is None and args.markdown is None:
        raise RunError("say what to write: --html FILE and/or --markdown FILE")
    if args.html is not None:
        from bench.core.optional import missing

        why = missing("matplotlib")
        if why is not None:
            raise RunError(f"the HTML report draws its plots with matplotlib: {why}")
    runs = [load_run(p) for p in args.runs]
    check_outputs({"--html": args.html, "--markdown": args.markdown}, runs)
    for run in runs[1:]:
        say_differences(runs[0], run)
    from bench.render.html import write_report

    try:
        report = write_report(runs, args.html, args.markdown)
    except OSError as exc:
        raise _write_error(exc.filename or "the report", exc) from None
    written = " and ".join(str(p) for p in (args.html, args.markdown) if p is not None)
    print(
        f"wrote {written}: {len(report.sections)} models, {len(report.cells)} cells from {len(runs)} run(s)"
    )
    return 0


# ------------------------------------------------------------------ merge
def cmd_merge(args: argparse.Namespace) -> int:
    from bench.results.merge import load_sources, write_merged

    runs = load_sources(args.runs, args.out, force=args.force)
    for run in runs[1:]:
        say_differences(runs[0], run)
    merged = write_merged(runs, args.out)
    hosts = ", ".join(sorted({str(h) for h in merged.cells["host"].dropna()}))
    print(f"merged {len(args.runs)} runs ({len(merged.cells)} cells, hosts: {hosts}) into {args.out}")
    return 0


# ------------------------------------------------------------------ baseline
def cmd_baseline(args: argparse.Namespace) -> int:
    from bench.results.baseline import find_baseline, list_baselines, save_baseline
    from bench.results.store import load_run

    if args.baseline_command == "save":
        dest = save_baseline(
            args.run, root=args.root, name=args.name, force=args.force, allow_contended=args.allow_contended
        )
        print(f"saved baseline {dest}: commit it to make it the reference for this machine class")
        return 0
    if args.baseline_command == "list":
        found = list_baselines(args.root)
        if not found:
            print(f"no baselines under {args.root}")
        for name, run in found:
            if isinstance(run, str):
                print(f"{name}: unreadable: {run}")
            else:
                print(
                    f"{name}: run {run.name}, {len(run.cells)} cells, captured {run.env.get('captured_at') or run.env.get('merged_at', '?')}"
                )
        return 0
    # check
    run = load_run(args.run)
    check_outputs({"--markdown": args.markdown, "--csv": args.csv}, [run])
    name, path = find_baseline(run, root=args.root, name=args.name)
    if path is None:
        message = (
            f"no baseline {name!r} under {args.root}: record one with "
            f"`python -m bench baseline save {args.run} --name {name}` and commit it"
        )
        if args.markdown is not None:
            _write(args.markdown, f"### genbench nightly: no baseline for this machine class\n\n{message}\n")
        if args.missing_ok:
            print(f"warning: {message}")
            return 0
        raise RunError(message)
    print(f"baseline {name}: {path}")
    return _compare_and_report(load_run(path), run, args)


def register(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    from bench.results.machine_class import DEFAULT_ROOT, NIGHTLY_THRESHOLD

    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "compare",
        help="compare two runs cell by cell: ratios with confidence intervals and a verdict",
        description="Join the cells of BASE and NEW on their key (and workload settings) and judge each pair: "
        "improved, regressed, unchanged or noisy, from a bootstrap interval of the median ratio of the raw "
        "samples of each workload's headline: latency (forward), s/image (sample), output tokens/s and TPOT "
        "(generate: regressed if either is).",
        epilog=COMPARE_EXAMPLES,
        formatter_class=fmt,
    )
    p.add_argument("base", type=Path, metavar="BASE", help="run folder or its cells.csv")
    p.add_argument("new", type=Path, metavar="NEW", help="run folder or its cells.csv")
    _add_compare_options(p, "5%")

    p = sub.add_parser(
        "report",
        help="one self-contained HTML page (or Markdown) putting devices side by side",
        epilog=REPORT_EXAMPLES,
        formatter_class=fmt,
    )
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders (or their cells.csv)")
    p.add_argument("--html", type=Path, metavar="FILE", help="write the HTML report (plots need matplotlib)")
    p.add_argument(
        "--markdown", type=Path, metavar="FILE", help="write the same tables as Markdown, without plots"
    )

    p = sub.add_parser(
        "merge",
        help="concatenate runs from several hosts into one run folder",
        epilog=MERGE_EXAMPLES,
        formatter_class=fmt,
    )
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders (or their cells.csv)")
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR",
        help="folder for the merged tables: new, empty, or holding only merge's own files (see below)",
    )  # fmt: skip
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a run (or merge's files left without one) already in --out",
    )

    p = sub.add_parser(
        "baseline",
        help="save a run as the baseline of its machine class, or check a run against it",
        epilog=BASELINE_EXAMPLES,
        formatter_class=fmt,
    )
    actions = p.add_subparsers(dest="baseline_command", required=True, metavar="ACTION")
    save = actions.add_parser("save", help="copy a run's tables to ROOT/NAME")
    save.add_argument("run", type=Path, metavar="RUN")
    save.add_argument(
        "--name", help="baseline name (default: the run's machine class, e.g. cpu-amd-epyc-avx2-4t)"
    )
    save.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help=f"baselines folder (default: {DEFAULT_ROOT})"
    )
    save.add_argument(
        "--force", action="store_true",
        help="replace an existing baseline of that name (and save a run with contended cells)",
    )  # fmt: skip
    save.add_argument(
        "--allow-contended", action="store_true",
        help="save a run although some cells shared the machine while timed (without replacing a baseline)",
    )  # fmt: skip
    check = actions.add_parser("check", help="compare a run against the baseline of its machine class")
    check.add_argument("run", type=Path, metavar="RUN")
    check.add_argument("--name", help="baseline name (default: the run's machine class)")
    check.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help=f"baselines folder (default: {DEFAULT_ROOT})"
    )
    check.add_argument(
        "--missing-ok", action="store_true", help="no baseline for this machine class: say so and exit 0"
    )
    _add_compare_options(check, f"{NIGHTLY_THRESHOLD:.0%}")
    listing = actions.add_parser("list", help="list the baselines under ROOT")
    listing.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help=f"baselines folder (default: {DEFAULT_ROOT})"
    )

    return {"compare": cmd_compare, "report": cmd_report, "merge": cmd_merge, "baseline": cmd_baseline}

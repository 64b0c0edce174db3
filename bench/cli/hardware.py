"""Sub-commands about hardware the user may not own (devices, peak, project).

``register`` adds their parsers and returns name -> handler for bench.cli. It
only builds parsers: torch, pandas and rich are imported inside the handlers so
``python -m bench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cli.common import wide_console
from bench.core.errors import EnvironmentProblem, RunError, UsageError

DEVICES_EXAMPLES = """examples:
  python -m bench devices
  python -m bench devices --kind tpu,fpga               # kinds: gpu, cpu, tpu, accelerator, fpga, edge-gpu
  python -m bench devices --sources
  python -m bench devices --catalog my-devices.toml     # your entries merged over the built-in ones

Kinds genbench cannot measure on (tpu, accelerator, fpga, edge-gpu) are projected with their kind's
published prior efficiency, as `uncalibrated` rows; the kinds table says which and why.
"""

PEAK_EXAMPLES = """examples:
  python -m bench peak                       # this machine's CPU (or the first GPU), cached after the first time
  python -m bench peak --device cuda:1 --refresh
  python -m bench peak --threads 1           # the peak a run with --threads 1 uses (leaves a core to others)
"""

PROJECT_EXAMPLES = """examples:
  python -m bench project --from results/RUN --targets h100-sxm,l4,rtx-4090
  python -m bench project --from results/RUN --targets self --check results/RUN     # round trip (<10% expected)
  python -m bench project --from results/RUN --targets self --check results/RUN --holdout
  python -m bench project --from results/CPU_RUN --targets h100-sxm --check results/H100_RUN
  python -m bench project --from results/RUN --targets xeon-spr-core:8,l4 --batch-sizes 1,8,64 --csv proj.csv
  python -m bench project --from results/GPT_RUN --targets h100-sxm,l4 --batch-sizes 1,8,32   # TTFT, TPOT, tokens/s
  python -m bench project --from results/RUN --targets tpu-v5e,inf2,gaudi3,jetson-orin-nano@15w --plot proj.png

A generate cell projects as two rows: prefill (latency: TTFT) and decode (latency: TPOT, items/s:
the batch's tokens/s; a step reads the measured decode bytes, weights + KV cache, at the measured
share of the bandwidth); a sample cell by its FLOPs alone. The `bound` column names the roof and phase.
Targets of a kind genbench cannot measure (TPU, accelerator, FPGA, Jetson) use their kind's published prior
efficiency with a wide band and say `uncalibrated`; KEY@MODE is a power mode (jetson-orin-nano@7w).
"""


def register(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    raw = argparse.RawDescriptionHelpFormatter
    dev = sub.add_parser(
        "devices",
        help="list the device catalogue (vendor peaks, memory, bandwidth, TDP, indicative prices)",
        description="The device catalogue used by `project`: dense vendor peaks per precision, with sources.",
        epilog=DEVICES_EXAMPLES,
        formatter_class=raw,
    )
    dev.add_argument(
        "--catalog", type=Path, help="TOML file of your own devices, merged over the built-in catalogue"
    )
    dev.add_argument("--sources", action="store_true", help="list the source of every figure")
    dev.add_argument(
        "--kind",
        metavar="KINDS",
        help="comma-separated kinds to list: gpu, cpu, tpu, accelerator, fpga, edge-gpu",
    )

    peak = sub.add_parser(
        "peak",
        help="measure the device's achievable GEMM rate per dtype and its copy bandwidth (cached)",
        description="Measure dense GEMM throughput (fp32, tf32, fp16, bf16, int8 where supported) and copy "
        "bandwidth, each until two windows agree within 5%, on a quiet machine (a busy or unstable measurement is "
        "refused, exit 1); cached per hardware (hw_id) and thread count under ~/.cache/genbench "
        "(or $GENBENCH_CACHE_DIR).",
        epilog=PEAK_EXAMPLES,
        formatter_class=raw,
    )
    peak.add_argument("--device", help="cpu, cuda or cuda:N (default: the first GPU if any, else cpu)")
    peak.add_argument("--refresh", action="store_true", help="measure again even if a cached result exists")
    peak.add_argument("--json", action="store_true", help="print the result as JSON")
    peak.add_argument(
        "--threads", type=int, metavar="N",
        help="torch threads for a CPU peak (default: torch's); a run with --threads N uses the peak measured with N",
    )  # fmt: skip

    proj = sub.add_parser(
        "project",
        help="project a measured run onto catalogued devices (roofline x measured efficiency)",
        description="Project throughput, latency, memory fit and cost of a run's cells onto other devices: "
        "forward calls and sampling runs, and a generation's prefill and decode (TTFT, TPOT, tokens/s). "
        "Method and assumptions: see bench/analysis/projection.py.",
        epilog=PROJECT_EXAMPLES,
        formatter_class=raw,
    )
    proj.add_argument(
        "--from",
        dest="from_run",
        type=Path,
        required=True,
        metavar="RUN",
        help="run folder (or its cells.csv)",
    )
    proj.add_argument(
        "--targets",
        help="comma-separated device keys or aliases; 'self' is the run's own device; KEY:N for N cores "
        "of a per-core entry, KEY@MODE for a power mode (default: every catalogue entry)",
    )
    proj.add_argument(
        "--batch-sizes", help="comma-separated batch sizes to project (default: those in the run)"
    )
    proj.add_argument(
        "--catalog", type=Path, help="TOML file of your own devices, merged over the built-in catalogue"
    )
    proj.add_argument("--csv", type=Path, help="where to write the tidy table (default: RUN/projection.csv)")
    proj.add_argument(
        "--plot", type=Path, metavar="FILE.png",
        help="also draw projected throughput against price per target, kinds coloured, bands as error bars "
        "(needs matplotlib, the report extra)",
    )  # fmt: skip
    proj.add_argument(
        "--check", type=Path, metavar="RUN",
        help="a run measured on one of the targets: report projected vs measured throughput",
    )  # fmt: skip
    proj.add_argument(
        "--holdout", action="store_true",
        help="calibrate each row without the cells at its own batch size (honest predictive error with --check)",
    )  # fmt: skip
    proj.add_argument(
        "--fp32-as", choices=("tf32", "fp32"), default="tf32",
        help="peak for fp32 pipelines on devices with TF32 (default tf32: cuDNN's TF32 is on by default in PyTorch)",
    )  # fmt: skip
    proj.add_argument(
        "--source-peak", choices=("auto", "catalog", "measured"), default="auto",
        help="how to get the run's device peak: catalogue entry, measured peak (bench peak), or auto (catalogue first)",
    )  # fmt: skip
    return {"devices": cmd_devices, "peak": cmd_peak, "project": cmd_project}


# ----------------------------------------------------------------- helpers
def _usage(message: str) -> Exception:
    return UsageError(message)


def _catalog(path: Path | None) -> Any:
    from bench.hardware.catalog import CatalogError, load_catalog

    try:
        return load_catalog(path)
    except CatalogError as exc:
        raise _usage(str(exc)) from None


def _print(*renderables: Any) -> None:
    """Print tables and notes on a console whose width the tables were fitted to."""
    console = wide_console()
    for renderable in renderables:
        console.print(renderable)


# ----------------------------------------------------------------- devices
def cmd_devices(args: argparse.Namespace) -> int:
    from bench.hardware.catalog import CatalogError
    from bench.render.hardware import devices_tables

    catalog = _catalog(args.catalog)
    if args.kind:
        try:
            catalog = catalog.of_kinds([k.strip() for k in args.kind.split(",") if k.strip()])
        except CatalogError as exc:
            raise _usage(str(exc)) from None
    _print(*devices_tables(catalog, wide_console().width, sources=args.sources))
    return 0


# ----------------------------------------------------------------- peak
def cmd_peak(args: argparse.Namespace) -> int:
    import torch

    from bench.core.device import best_available, check_available, parse_device

    try:
        device = parse_device(args.device) if args.device else best_available()
        check_available(device)
    except ValueError as exc:
        raise _usage(str(exc)) from None
    if args.threads is not None:
        if args.threads < 1:
            raise _usage(f"--threads must be at least 1, got {args.threads}")
        if device.is_cuda:
            raise _usage("--threads sets the CPU's torch threads; a GPU peak does not depend on them")
    saved = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        return _peak(device, args)
    finally:
        torch.set_num_threads(saved)  # the process may go on (tests, a caller of main)


def _peak(device: Any, args: argparse.Namespace) -> int:
    """Reuse the peak cached for this hw_id and thread count, or measure one; say which before doing it."""
    from bench.core.device import device_name
    from bench.hardware.peak import AGREE_WITHIN, cache_key, cache_path, measured_peak, usable_peak
    from bench.render.hardware import peak_table

    console = wide_console()
    hw_id, threads = cache_key(device)
    key = f"hw_id {hw_id}" + (f", {threads} thread{'s' if threads > 1 else ''}" if threads else "")
    cached = None if args.refresh else usable_peak(device, device_name(device))
    if not args.json:
        if cached is not None:
            console.print(f"using the cached peak from {cached.date} ({key}); --refresh re-measures")
        else:
            console.print(
                f"measuring the peak of {device} ({key}): each rate until its best two windows agree "
                f"within {100 * AGREE_WITHIN:.0f}%, on a quiet machine (seconds to minutes)..."
            )
    result = cached or measured_peak(device, refresh=True)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    for renderable in peak_table(result, console.width):
        console.print(renderable)
    path = cache_path(result.device_name, result.hw_id, result.threads)
    console.print(f"{'read from' if cached is not None else 'cached in'} {path}")
    return 0


# ----------------------------------------------------------------- project
def _batch_sizes(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        sizes = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise _usage(f"--batch-sizes must be integers, got {text!r}") from None
    if not sizes or any(b < 1 for b in sizes):
        raise _usage("batch sizes must be positive")
    return sizes


def _run_facts(path: Path) -> tuple[Any, str, str, int | None, str]:
    """Cells, device_name, device, torch threads and run id of a run folder (one device per run)."""
    from bench.results.store import read_cells

    try:
        cells = read_cells(path)
    except ValueError as exc:
        raise _usage(str(exc)) from None
    names = cells["device_name"].dropna().unique()
    if len(names) != 1:
        raise _usage(f"{path}: expected cells from one device, found {len(names)} device names")
    devices = cells["device"].dropna().unique()
    folder = path if path.is_dir() else path.parent
    threads: int | None = None
    env = folder / "env.json"
    if env.is_file():
        try:
            threads = json.loads(env.read_text()).get("cpu", {}).get("torch_threads")
        except (json.JSONDecodeError, AttributeError):
            threads = None
    run_ids = cells["run_id"].dropna().unique()
    run_id = str(run_ids[0]) if len(run_ids) else folder.name
    return cells, str(names[0]), str(devices[0]) if len(devices) else "cpu", threads, run_id


def cmd_project(args: argparse.Namespace) -> int:
    from bench.analysis.projection import add_check, project, tidy
    from bench.analysis.source import Source, resolve_source
    from bench.hardware.catalog import UnknownDeviceError

    batch_sizes = _batch_sizes(args.batch_sizes)
    catalog = _catalog(args.catalog)
    csv = _csv_path(args)  # before anything slow: a table that would overwrite an input fails at once
    _check_plot_path(args.plot)
    cells, device_name, device, threads, run_id = _run_facts(args.from_run)
    names = [t.strip() for t in args.targets.split(",") if t.strip()] if args.targets else None
    targets = []
    for name in names or []:  # resolve names before anything slow, so a typo fails at once
        if name.lower() == "self":
            targets.append(None)
            continue
        try:
            targets.append(catalog.find(name))
        except UnknownDeviceError as exc:
            raise _usage(str(exc)) from None
    try:
        source: Source = resolve_source(device_name, device, threads, catalog, args.source_peak)
    except ValueError as exc:
        raise _usage(str(exc)) from None
    if names is None:
        targets = [*catalog.devices.values(), source.spec]
    targets = [source.spec if t is None else t for t in targets]

    check = None
    if args.check:
        check_cells, check_name, check_device, check_threads, _ = _run_facts(args.check)
        if check_name == device_name:
            check_target = source.spec
        else:
            try:
                check_target = resolve_source(check_name, check_device, check_threads, catalog, "auto").spec
            except ValueError as exc:
                raise _usage(f"--check: {exc}") from None
        if all(t.label != check_target.label for t in targets):
            targets.append(check_target)
        check = (check_cells, check_target, args.check)

    try:
        frame = project(
            cells,
            source,
            targets,
            batch_sizes,
            args.fp32_as,
            args.holdout,
            source_run=run_id,
        )
    except ValueError as exc:
        raise _usage(str(exc)) from None
    if check is not None:
        frame = add_check(frame, check[0], check[1].label)
    frame = tidy(frame)
    try:
        csv.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(csv, index=False)
    except OSError as exc:  # a read-only folder, a full disk
        raise EnvironmentProblem(f"cannot write the projection table {csv}: {exc.strerror or exc}") from None
    _print_projection(frame, source, check, csv, args)
    if args.plot is not None:
        _write_plot(frame, args.plot)
    return 0


def _check_plot_path(plot: Path | None) -> None:
    """A --plot that cannot be drawn fails before anything runs: no matplotlib, or not a .png file."""
    if plot is None:
        return
    from bench.core.optional import missing

    why = missing("matplotlib")
    if why:
        raise _usage(f"--plot draws with matplotlib: {why}")
    if plot.suffix.lower() != ".png" or plot.is_dir():
        raise _usage(f"--plot {plot}: give a .png file name")


def _write_plot(frame: Any, plot: Path) -> None:
    from bench.render.hardware import projection_figure

    png = projection_figure(frame)
    if png is None:
        wide_console().print(f"no plot: no target has a projected row to draw ({plot} not written)")
        return
    try:
        plot.parent.mkdir(parents=True, exist_ok=True)
        plot.write_bytes(png)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write the plot {plot}: {exc.strerror or exc}") from None
    wide_console().print(f"plot written to {plot}")


#: a run folder's own files, which --csv must not overwrite
RUN_FILES = ("cells.csv", "cells.parquet", "cells.json", "samples.csv", "env.json", "manifest.json")


def _csv_path(args: argparse.Namespace) -> Path:
    """Where the projection goes: --csv, else RUN/projection.csv; never a file of the runs it reads."""
    folder = args.from_run if args.from_run.is_dir() else args.from_run.parent
    csv: Path = args.csv or folder / "projection.csv"
    if csv.is_dir():
        raise _usage(f"--csv {csv} is a folder; give a file name, such as {csv / 'projection.csv'}")
    target = csv.resolve()
    for run in (args.from_run, args.check):
        if run is None:
            continue
        run_folder = run if run.is_dir() else run.parent
        inputs = [run_folder / name for name in RUN_FILES] + ([] if run.is_dir() else [run])
        for path in inputs:
            if path.resolve() == target:
                raise RunError(
                    f"--csv {csv} is {path.name} of the run {run_folder} that project reads; "
                    "write the table elsewhere (default: RUN/projection.csv)"
                )
    return csv


def _print_projection(frame: Any, source: Any, check: Any, csv: Path, args: argparse.Namespace) -> None:
    from bench.render.hardware import projection_tables

    _print(*projection_tables(frame, source, check, csv, args.from_run, args.holdout, wide_console().width))

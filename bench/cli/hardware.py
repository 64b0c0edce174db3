"""Sub-commands about hardware the user may not own (devices, peak, project).

``register`` adds their parsers and returns name -> handler for bench.cli. It
only builds parsers: torch, pandas and rich are imported inside the handlers so
``python -m bench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEVICES_EXAMPLES = """examples:
  python -m bench devices
  python -m bench devices --sources
  python -m bench devices --catalog my-devices.toml     # your entries merged over the built-in ones
"""

PEAK_EXAMPLES = """examples:
  python -m bench peak                       # this machine's CPU (or the first GPU), cached after the first time
  python -m bench peak --device cuda:1 --refresh
"""

PROJECT_EXAMPLES = """examples:
  python -m bench project --from results/RUN --targets h100-sxm,l4,rtx-4090
  python -m bench project --from results/RUN --targets self --check results/RUN     # round trip (<10% expected)
  python -m bench project --from results/RUN --targets self --check results/RUN --holdout
  python -m bench project --from results/CPU_RUN --targets h100-sxm --check results/H100_RUN
  python -m bench project --from results/RUN --targets xeon-spr-core:8,l4 --batch-sizes 1,8,64 --csv proj.csv
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

    peak = sub.add_parser(
        "peak",
        help="measure the device's achievable GEMM rate per dtype and its copy bandwidth (cached)",
        description="Measure dense GEMM throughput (fp32, tf32, fp16, bf16, int8 where supported) and copy "
        "bandwidth once; cached per device under ~/.cache/genbench (or $GENBENCH_CACHE_DIR).",
        epilog=PEAK_EXAMPLES,
        formatter_class=raw,
    )
    peak.add_argument("--device", help="cpu, cuda or cuda:N (default: the first GPU if any, else cpu)")
    peak.add_argument("--refresh", action="store_true", help="measure again even if a cached result exists")
    peak.add_argument("--json", action="store_true", help="print the result as JSON")

    proj = sub.add_parser(
        "project",
        help="project a measured run onto catalogued devices (roofline x measured efficiency)",
        description="Project throughput, latency, memory fit and cost of a run's cells onto other devices. "
        "Method and assumptions: see bench/projection.py.",
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
        "of a per-core entry (default: every catalogue entry)",
    )
    proj.add_argument(
        "--batch-sizes", help="comma-separated batch sizes to project (default: those in the run)"
    )
    proj.add_argument(
        "--catalog", type=Path, help="TOML file of your own devices, merged over the built-in catalogue"
    )
    proj.add_argument("--csv", type=Path, help="where to write the tidy table (default: RUN/projection.csv)")
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
    from bench.cli import UsageError

    return UsageError(message)


def _catalog(path: Path | None) -> Any:
    from bench.hardware.catalog import CatalogError, load_catalog

    try:
        return load_catalog(path)
    except CatalogError as exc:
        raise _usage(str(exc)) from None


def _console() -> Any:
    from bench.render.console import make_console

    return make_console(min_width=160)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "-"
    if number == 0:
        return "0"
    if abs(number) >= 10 ** (digits + 2) or abs(number) < 10 ** (-digits):
        return f"{number:.{digits - 1}e}"
    return f"{number:.{digits}g}" if abs(number) < 10**digits else f"{number:,.0f}"


# ----------------------------------------------------------------- devices
def cmd_devices(args: argparse.Namespace) -> int:
    from rich.table import Table

    from bench.hardware.catalog import PRECISIONS, display_value

    catalog = _catalog(args.catalog)
    console = _console()
    table = Table(
        title=f"device catalogue {catalog.version} ({', '.join(catalog.files)}): dense peaks, TFLOPS (int8: TOPS); "
        "* = the vendor also quotes 2x with sparsity",
        title_justify="left",
    )
    for col in (
        "key",
        "name",
        "kind",
        *PRECISIONS,
        "memory GiB",
        "bandwidth GB/s",
        "TDP W",
        "price USD",
        "cloud USD/h",
    ):
        table.add_column(
            col, justify="left" if col in ("key", "name", "kind") else "right", no_wrap=col != "name"
        )
    for key, spec in catalog.devices.items():
        peaks = []
        for precision in PRECISIONS:
            fig = spec.peak[precision]
            unit = "TOPS" if precision == "int8" else "TFLOPS"
            peaks.append("-" if fig is None else display_value(fig, unit) + ("*" if fig.sparse else ""))
        kind = spec.kind + (" (per core)" if spec.per == "core" else "")
        table.add_row(
            key, spec.name, kind, *peaks,
            display_value(spec.memory, "GiB"), display_value(spec.memory_bandwidth, "GB/s"),
            display_value(spec.tdp, "W"), "~" + display_value(spec.price, "USD"),
            "~" + display_value(spec.cloud_price, "USD/h"),
        )  # fmt: skip
    console.print(table)
    console.print(
        "prices are indicative (rounded; dated in the catalogue): `--sources` lists every figure's source"
    )
    if args.sources:
        sources = Table(title="sources", title_justify="left")
        for col in ("key", "figure", "value", "date", "source"):
            sources.add_column(col)
        for key, spec in catalog.devices.items():
            figures: list[tuple[str, Any]] = [(f"peak.{p}", spec.peak[p]) for p in PRECISIONS]
            figures += [
                (f, getattr(spec, f)) for f in ("memory", "memory_bandwidth", "tdp", "price", "cloud_price")
            ]
            for name, fig in figures:
                if fig is None:
                    p = name.removeprefix("peak.")
                    sources.add_row(key, name, "unsupported", "", spec.unsupported.get(p, ""))
                    continue
                from bench.hardware.catalog import UNITS

                factor = {u: f for t in UNITS.values() for u, f in t.items()}[fig.unit]
                value = f"{fig.value / factor:g} {fig.unit}" + (
                    f" ({fig.sparse / factor:g} sparse)" if fig.sparse else ""
                )
                sources.add_row(key, name, value, fig.date or "", fig.source)
        console.print(sources)
    return 0


# ----------------------------------------------------------------- peak
def cmd_peak(args: argparse.Namespace) -> int:
    from rich.table import Table

    from bench.core.device import best_available, check_available, parse_device
    from bench.hardware.peak import cache_path, measured_peak

    try:
        device = parse_device(args.device) if args.device else best_available()
        check_available(device)
    except ValueError as exc:
        raise _usage(str(exc)) from None
    console = _console()
    if not args.json:
        console.print(f"measuring peak of {device} (cached after the first time; --refresh to re-measure)...")
    result = measured_peak(device, refresh=args.refresh)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    table = Table(
        title=f"measured peak: {result.device_name} ({result.device}, {result.threads or 'all'} threads, "
        f"torch {result.torch_version}, {result.measured_at})",
        title_justify="left",
    )
    for col in ("what", "rate", "note"):
        table.add_column(col)
    for dtype in ("fp32", "tf32", "fp16", "bf16", "int8"):
        if dtype in result.flops:
            unit = "TOPS" if dtype == "int8" else "TFLOPS"
            sizes = [d["n"] for d in result.details if d["dtype"] == dtype]
            table.add_row(dtype, f"{result.flops[dtype] / 1e12:.4g} {unit}", f"best of n = {sizes}")
        else:
            table.add_row(dtype, "-", f"skipped: {result.skipped.get(dtype, 'not measured')}")
    table.add_row("copy", f"{result.copy_bytes_s / 1e9:.4g} GB/s", "bytes read + written per second")
    console.print(table)
    console.print(f"cached in {cache_path(result.device_name)}")
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
    from bench.results.schema import read_cells

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


def _profiles(cells: Any) -> dict[tuple[str, str], Any]:
    """Traffic profiles of the run's reference models; custom models cannot be rebuilt from a run."""
    from bench.analysis.projection import profile_model
    from reference_models import MODELS

    profiles: dict[tuple[str, str], Any] = {}
    for model, size in cells[["model", "size"]].drop_duplicates().itertuples(index=False):
        spec = MODELS.get(model)
        if spec is None or size not in spec.sizes:
            profiles[(model, size)] = (
                f"{model!r} is not a reference model: its graph cannot be traced from the run"
            )
            continue
        profiles[(model, size)] = profile_model(spec, size)
    return profiles


def cmd_project(args: argparse.Namespace) -> int:
    from bench.analysis.projection import Source, add_check, project, resolve_source, tidy
    from bench.hardware.catalog import UnknownDeviceError

    batch_sizes = _batch_sizes(args.batch_sizes)
    catalog = _catalog(args.catalog)
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
                check_target = resolve_source(
                    check_name, check_device, check_threads, catalog, "auto", False
                ).spec
            except ValueError as exc:
                raise _usage(f"--check: {exc}") from None
        if all(t.label != check_target.label for t in targets):
            targets.append(check_target)
        check = (check_cells, check_target, args.check)

    try:
        frame = project(
            cells,
            _profiles(cells),
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
    csv = args.csv or ((args.from_run if args.from_run.is_dir() else args.from_run.parent) / "projection.csv")
    csv.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv, index=False)
    _print_projection(frame, source, check, csv, args)
    return 0


def _print_projection(frame: Any, source: Any, check: Any, csv: Path, args: argparse.Namespace) -> None:
    from rich.table import Table

    console = _console()
    console.print(f"[bold]projection[/] of {args.from_run}: calibrated on {source.how}")
    with_check = check is not None
    table = Table(
        title="projected throughput = efficiency on the measured device x the target's roofline bound "
        "(band: min..max efficiency over the pipeline family's cells)",
        title_justify="left",
    )
    cols = [
        "target", "model", "pipeline", "batch", "peak", "bound", "items/s", "band", "latency ms",
        "fits (max batch)", "items/s per k$", "$ per M items", "items/J",
    ]  # fmt: skip
    cols.append("notes")
    if with_check:
        cols += ["measured", "error"]
    for col in cols:
        table.add_column(
            col,
            justify="left" if col in ("target", "model", "pipeline", "peak", "bound", "notes") else "right",
        )
    for r in frame.itertuples(index=False):
        status = r.status
        if status in ("ok", "does-not-fit"):
            peak = f"{r.target_precision} {_fmt(r.target_peak_tflops)}T"
            fits = f"yes ({r.max_batch})" if bool(r.fits) else f"does not fit ({r.max_batch})"
        else:
            peak, fits = "-", "-"
        if status == "ok":
            items = _fmt(r.throughput_items_s)
            band = f"{_fmt(r.throughput_items_s_lo)}..{_fmt(r.throughput_items_s_hi)}"
            latency = _fmt(r.latency_ms)
        elif status == "does-not-fit":
            items, band, latency = "does not fit", "", ""
        else:
            items, band, latency = status, str(r.reason)[:60], ""
        bound = str(r.bound) if status in ("ok", "does-not-fit") else "-"
        row = [
            r.target, f"{r.model} {r.size}", r.pipeline, str(r.batch_size), peak, bound, items, band, latency, fits,
            _fmt(r.items_s_per_kusd), _fmt(r.usd_per_million_items), _fmt(r.items_per_joule),
            _tags(r.reason) if status == "ok" else "",
        ]  # fmt: skip
        if with_check:
            err = r.error_pct
            row += [_fmt(r.measured_items_s), "-" if _nan(err) else f"{float(err):+.1f}%"]
        table.add_row(*row)
    console.print(table)
    if with_check:
        _, target, path = check
        rows = frame[(frame["target"] == target.label) & frame["error_pct"].notna()]
        if rows.empty:
            console.print(f"--check {path}: no projected cell matches a measured ok cell on {target.label}")
        else:
            errors = rows["error_pct"].astype(float).abs()
            in_band = rows["in_band"].astype("boolean").fillna(False).astype(bool)
            console.print(
                f"--check {path} ({target.label}): {len(rows)} cells, median |error| {errors.median():.1f}%, "
                f"max |error| {errors.max():.1f}%, {int(in_band.sum())}/{len(rows)} measured values inside the band"
                + (" [holdout]" if args.holdout else "")
            )
    console.print(
        "notes: fp32-calibrated = precision emulated on the measured device, calibrated with its fp32 cells; "
        "overhead-bound = under 1% of the roofline bound there (see the CSV's reason column)"
    )
    console.print(f"table written to {csv}")


def _tags(reason: Any) -> str:
    """Short flags for the table; the CSV's reason column has the full text."""
    text = reason if isinstance(reason, str) else ""
    tags = []
    if "emulated" in text:
        tags.append("fp32-calibrated")
    if "overhead" in text:
        tags.append("overhead-bound: unreliable")
    return ", ".join(tags)


def _nan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True

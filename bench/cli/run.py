"""`run` (the matrix), `list` (models and passes) and `env` (what env.json records).

``register`` only builds parsers; torch and everything measured are imported inside
the handlers, so ``python -m bench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from bench.cli.common import device_from_flag
from bench.core.errors import EXIT_INTERRUPTED, EnvironmentProblem, UsageError
from bench.harness.config import FLAG_FIELDS, RunConfig, build_config, load_toml

Handler = Any

RUN_EXAMPLES = """examples:
  python -m bench run                                   # every model, default pipelines, best device
  python -m bench run --models unet --pipelines fp32,bf16,compile --batch-sizes 1,8,32
  python -m bench run --device cuda:1 --size base --time-budget 5
  python -m bench run --model mypkg.models:make_generator --pipelines fp32,bf16
  python -m bench run --config nightly.toml --out results/nightly   # keys: the flag names
  python -m bench run --ray auto --devices cpu,cuda --ray-resource accelerator_type:H100@cuda
"""


def register(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    p = sub.add_parser(
        "run",
        help="run the benchmark matrix and write result tables",
        description="Run models x pipelines x batch sizes on one device; write results/<run_id>/.",
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: the first GPU if any, else cpu)")
    p.add_argument("--models", help="comma-separated reference models: dcgan,vae,unet,gpt,ldm (default: all)")
    p.add_argument(
        "--model", action="append", dest="custom_models", metavar="PKG.MODULE:FACTORY|hf:PATH",
        help="bring your own model: factory() returns (module, make_inputs), or a causal LM (a transformers "
        "model or one with the gpt interface); hf:PATH is a local Hugging Face folder; repeatable",
    )  # fmt: skip
    p.add_argument(
        "--weights", metavar="FILE.safetensors", help="load this checkpoint into the run's one model"
    )
    p.add_argument("--size", help="tiny, small or base (default: small)")
    p.add_argument(
        "--pipelines", help="comma-separated pipelines, e.g. fp32,bf16+channels_last,compile:max-autotune"
    )
    p.add_argument("--batch-sizes", help="comma-separated batch sizes (default: 1,8)")
    p.add_argument(
        "--config", type=Path, help="TOML run file whose keys are these flags' names; flags given here win"
    )
    p.add_argument("--out", help="output folder (default: results/<run_id>)")
    p.add_argument(
        "--time-budget", type=float, dest="time_budget_s", help="seconds of sampling per cell (default: 2)"
    )
    p.add_argument("--min-samples", type=int, help="samples per cell at least (default: 10)")
    p.add_argument("--warmup", type=float, dest="warmup_s", help="seconds of warm-up per cell (default: 0.3)")
    p.add_argument(
        "--min-psnr", type=float, dest="min_psnr_db", help="quality gate in dB for fidelity_ok (default: 30)"
    )
    p.add_argument("--seed", type=int, help="seed of the example inputs (default: 0)")
    p.add_argument(
        "--keep-artifacts", action="store_true", default=None, help="keep exported files under the run folder"
    )
    p.add_argument(
        "--include-transfers", action="store_true", default=None,
        help="on a GPU, time host->device input copies and device->host output copies with each call "
        "(they are always measured apart, in transfer_h2d_ms / transfer_d2h_ms)",
    )  # fmt: skip
    p.add_argument(
        "--isolation", choices=("process", "none"),
        help="process: each cell in a fresh worker process, so a crash, hang or leak ends one cell, not the run "
        "(default); none: every cell in this process, for quick iteration",
    )  # fmt: skip
    p.add_argument(
        "--cell-timeout", type=float, dest="cell_timeout_s", metavar="SECONDS",
        help="kill a cell's worker after this long and record status timeout "
        "(default: 300 s of build allowance + 10x the warm-up and time budget)",
    )  # fmt: skip
    p.add_argument(
        "--threads", type=int, help="intra-op threads per cell (default: every core); recorded in every row"
    )
    p.add_argument(
        "--repeats", type=int,
        help="run the whole matrix N times, one pass after another; compare pools the repeats (default: 1)",
    )  # fmt: skip
    gen = p.add_argument_group("generate workload (gpt, causal LMs)")
    gen.add_argument("--prompt-len", type=int, help="prompt tokens (default: 128 on a GPU, 32 on CPU)")
    gen.add_argument(
        "--new-tokens", type=int, help="greedy decode length, fixed (default: 128 on a GPU, 32 on CPU)"
    )
    gen.add_argument(
        "--kv-cache", choices=("static", "dynamic"),
        help="static: preallocated to prompt + new tokens, fixed shapes for compile and CUDA graphs "
        "(default); dynamic: grows per step",
    )  # fmt: skip
    gen.add_argument(
        "--min-token-match", type=float,
        help="quality gate for fidelity_ok: share of teacher-forced next tokens that agree with fp32 (default: 0.9)",
    )  # fmt: skip
    smp = p.add_argument_group("sample workload (ldm)")
    smp.add_argument("--steps", type=int, help="sampling steps (default: 50 on a GPU, 10 on CPU)")
    smp.add_argument(
        "--guidance", type=float,
        help="classifier-free guidance scale (default: 7.5; the UNet runs a doubled batch); 1 turns it off",
    )  # fmt: skip
    smp.add_argument("--sampler", choices=("ddim", "euler"), help="step rule (default: ddim)")
    srv = p.add_argument_group("serving scenarios")
    srv.add_argument(
        "--scenario", choices=("single-stream", "offline", "server"),
        help="single-stream: one call at a time (default); offline: every item at once, reports the batch size "
        "with the most items/s among those that fit (--batch-sizes bounds the search; default 1..64); "
        "server: Poisson arrivals, dynamic batching, latency from scheduled arrival",
    )  # fmt: skip
    srv.add_argument(
        "--target-qps", metavar="RATES", help="server: offered requests/s, comma-separated; one cell per rate"
    )
    srv.add_argument(
        "--duration", type=float, dest="duration_s", metavar="SECONDS",
        help="server: seconds each load is measured, after a warm-up of 10%% of it (1-10 s) (default: 30)",
    )  # fmt: skip
    srv.add_argument("--max-batch", type=int, help="server: the dynamic batcher's largest batch (default: 8)")
    srv.add_argument(
        "--max-queue-delay-ms", type=float,
        help="server: how long the oldest queued request waits for others to join its batch (default: 0, Triton's)",
    )  # fmt: skip
    srv.add_argument(
        "--slo-p99-ms", metavar="MS|Nx",
        help="server: p99 latency target in ms, or Nx: N times the cell's own warm batch-1 latency; rows get "
        "goodput_qps and slo_met",
    )  # fmt: skip
    srv.add_argument(
        "--find-peak", action="store_true", default=None,
        help="server: search the highest rate whose p99 meets --slo-p99-ms (peak_qps; every probe in probes.csv)",
    )  # fmt: skip
    srv.add_argument(
        "--soak", dest="soak_s", metavar="DURATION",
        help="run the scenario this long (600, 10m, 1h), recording timeseries.csv once per second and checking "
        "for drift, memory growth and throttling",
    )  # fmt: skip
    srv.add_argument(
        "--metrics-port", type=int, metavar="PORT",
        help="serve the live values as Prometheus metrics on this port (extra: serve)",
    )  # fmt: skip
    ray = p.add_argument_group("running across machines (Ray; extra: ray)")
    ray.add_argument(
        "--ray", metavar="ADDRESS|auto|local",
        help="run each cell as a task on a Ray cluster: its address, auto (RAY_ADDRESS or the cluster running "
        "here) or local (start one on this machine); rows from every node land in one run folder",
    )  # fmt: skip
    ray.add_argument(
        "--devices", metavar="CLASSES",
        help="device classes to cover, each with the full matrix, e.g. cpu,cuda (default: cuda where the "
        "cluster has GPUs, else cpu)",
    )  # fmt: skip
    ray.add_argument(
        "--node-label", action="append", dest="node_labels", metavar="KEY=VALUE[@CLASS]",
        help="run the cells (of CLASS) only on nodes with this Ray label, e.g. "
        "ray.io/accelerator-type=H100@cuda; repeatable",
    )  # fmt: skip
    ray.add_argument(
        "--ray-resource", action="append", dest="ray_resources", metavar="NAME[=AMOUNT][@CLASS]",
        help="the cells (of CLASS) ask for this custom resource, e.g. accelerator_type:H100@cuda (default "
        "amount 0.001: the node must have it, cells share it); repeatable",
    )  # fmt: skip
    ray.add_argument(
        "--ray-retries", type=int,
        help="times Ray reruns a cell whose worker or node died before its row is an error (default: 1)",
    )  # fmt: skip

    lst = sub.add_parser(
        "list",
        help="list models (params, GFLOPs, input shapes) and passes (and whether they run here)",
        epilog="examples:\n  python -m bench list\n  python -m bench list --device cuda",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lst.add_argument("--device", help="device to check passes against (default: best present)")
    lst.add_argument("--model", action="append", dest="custom_models", metavar="PKG.MODULE:FACTORY")
    sub.add_parser(
        "env", help="print the environment that env.json records", epilog="example:\n  python -m bench env"
    )
    return {"run": cmd_run, "list": cmd_list, "env": cmd_env}


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run file's values, then every flag given on the command line over them."""
    file_values = load_toml(args.config) if args.config else {}
    overrides = {field: getattr(args, field) for field in FLAG_FIELDS.values()}
    if args.custom_models:
        overrides["custom_models"] = tuple(args.custom_models)
    return build_config(file_values, overrides)


def cmd_run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if config.ray is not None:
        return _ray_run(config)
    device = device_from_flag(config.device)

    import torch

    from bench.harness.plan import at_rates, excluded_reason, plan_cells, resolve_models, resolve_pipelines
    from bench.harness.runner import Runner
    from bench.measure.contention import busy_before_run
    from bench.measure.environment import capture_environment
    from bench.measure.fingerprint import hardware_fingerprint
    from bench.render.console import cell_progress, make_console, summary_tables
    from bench.results.writer import ResultWriter

    try:
        specs = resolve_models(config.models, config.custom_models, config.weights, check_size=config.size)
        pipelines = resolve_pipelines(config.pipelines, device)
        if config.soak_s is not None and config.pipelines is not None and "fp32" not in config.pipelines:
            # a soak watches the pipelines asked for over time: no fp32 baseline cell of the same length
            pipelines = [p for p in pipelines if p.text != "fp32"] or pipelines
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _check_models(specs, config, device.is_cuda)

    if config.threads is not None:
        torch.set_num_threads(config.threads)  # here for --isolation none; each worker sets its own
    run_id = new_run_id(device.kind)
    out_dir = Path(config.out) if config.out else Path("results") / run_id
    claim_run_folder(out_dir)
    writer = ResultWriter(out_dir)
    env = capture_environment()
    writer.write_env(
        {
            **env,
            "run_id": run_id,
            "device": str(device),
            "fingerprint": hardware_fingerprint(device),
            "threads": torch.get_num_threads(),
            "isolation": config.isolation,
            "config": config.to_json(),
        }
    )
    defaults = config.pipelines is None
    # a server cell's batch is its batcher's largest (--max-batch); its rates multiply the cells
    batch_sizes = (config.max_batch,) if config.scenario == "server" else config.batch_sizes
    cells = at_rates(
        plan_cells(specs, config.size, pipelines, batch_sizes, config.repeats, defaults, device.is_cuda),
        config.target_qps,
    )

    console = make_console()
    busy = busy_before_run(torch.get_num_threads())
    if busy is not None:
        console.print(f"[yellow]{busy}[/]")
    console.print(
        f"[bold]genbench[/] run {run_id}: {len(cells)} cells on {device} "
        f"({len(specs)} models x {len(pipelines)} pipelines x {_third_axis(config)}"
        f"{f' x {config.repeats} repeats' if config.repeats > 1 else ''}; {torch.get_num_threads()} threads, "
        f"isolation {config.isolation}) -> {out_dir}"
    )
    if config.pipelines is None:
        from rich.markup import escape

        from bench.harness.plan import default_pipelines

        for pipeline in default_pipelines(device):
            reason = excluded_reason(pipeline, device)
            if reason is not None:
                # escaped: a reason holds install hints like pip install -e ".[ao]", which rich took for markup
                console.print(
                    f"  [dim]left out of the default matrix: {escape(pipeline.text)} ({escape(reason)})[/]"
                )
        if not device.is_cuda:
            from bench.harness.plan import CPU_LEFT_OUT

            workloads = {spec.workload for spec in specs}
            for workload, left in CPU_LEFT_OUT.items():
                for text, why in left.items():
                    if workload in workloads:
                        console.print(
                            f"  [dim]left out of the {workload} models' defaults: {text} ({why})[/]"
                        )
    started = time.perf_counter()
    terminate_as_interrupt()
    if config.soak_s is not None or config.metrics_port is not None:
        return _watched_run(config, device, writer, run_id, cells, console, out_dir, started)
    with cell_progress(console, len(cells)) as progress:
        task = progress.add_task("cells", total=len(cells))
        runner = Runner(
            config, device, writer, run_id,
            on_cell_start=lambda cell: progress.update(
                task, description=f"{cell.spec.name} {cell.pipeline.text} b{cell.batch_size}"
            ),
            on_cell_done=lambda result: progress.advance(task),
        )  # fmt: skip
        try:
            runner.run(cells)
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted: {len(writer.rows)} finished cells kept in {out_dir}[/]")
            return EXIT_INTERRUPTED
    for table in summary_tables(writer.frame()):
        console.print(table)
    if config.scenario == "offline":
        for line in offline_lines(writer.frame()):
            console.print(line)
    counts = writer.frame()["status"].value_counts().to_dict()
    console.print(
        f"{len(cells)} cells in {time.perf_counter() - started:.0f} s "
        f"({', '.join(f'{v} {k}' for k, v in counts.items())}); tables in {out_dir}"
    )
    return 0


def _check_models(specs: list[Any], config: RunConfig, on_gpu: bool) -> None:
    """Every model has the size asked for, and a generation fits its context (lengths differ by device)."""
    workload = config.workload_settings(on_gpu)
    for spec in specs:
        if config.size not in spec.sizes and len(spec.sizes) > 1:
            raise UsageError(f"model {spec.name!r} has no size {config.size!r}")
        context = spec.context_length(config.size) if spec.context_length is not None else None
        wanted = workload.prompt_len + workload.new_tokens
        if spec.workload == "generate" and context is not None and wanted > context:
            raise UsageError(
                f"--prompt-len {workload.prompt_len} + --new-tokens {workload.new_tokens} = {wanted} tokens "
                f"exceed {spec.name}'s context of {context}"
            )


def _ray_run(config: RunConfig) -> int:
    """``run --ray``: every cell a task on the cluster (bench.cluster), every row in one run folder here.

    Each device class is planned on a node of it and gets the full matrix; the cells are numbered
    across classes; env.json lists the cluster and, as each node reports, that node's environment
    (``runs``, as a merged run lists its sources).
    """
    import socket
    from dataclasses import replace

    from bench.cluster.driver import RayExecutor, connect, plan_classes
    from bench.core.device import Device
    from bench.harness.plan import at_rates, plan_cells, resolve_models
    from bench.harness.runner import Runner
    from bench.render.console import cell_progress, make_console, summary_tables
    from bench.results.writer import ResultWriter
    from optimizers.registry import parse_pipeline

    try:
        specs = resolve_models(config.models, config.custom_models, config.weights, check_size=config.size)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    session = connect(config.ray or "")
    try:
        plans = plan_classes(session, config)
        cells: list[Any] = []
        plan_of: dict[int, Any] = {}
        batch_sizes = (config.max_batch,) if config.scenario == "server" else config.batch_sizes
        for plan in plans:
            _check_models(specs, plan.config, plan.device == "cuda")
            try:
                pipelines = [parse_pipeline(text) for text in plan.pipelines]
            except ValueError as exc:
                raise UsageError(f"{plan.device} pipelines planned on {plan.planned_on}: {exc}") from None
            own = plan_cells(
                specs, config.size, pipelines, batch_sizes, config.repeats, config.pipelines is None,
                plan.device == "cuda",
            )  # fmt: skip
            for cell in at_rates(own, config.target_qps):
                cell = replace(cell, cell_id=len(cells))
                cells.append(cell)
                plan_of[cell.cell_id] = plan
        classes = [plan.device for plan in plans]
        run_id = new_run_id("ray-" + "-".join(classes))
        out_dir = Path(config.out) if config.out else Path("results") / run_id
        claim_run_folder(out_dir)
        writer = ResultWriter(out_dir)
        writer.write_env(
            {
                "run_id": run_id,
                "captured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "driver_host": socket.gethostname(),
                "ray": session.describe(),
                "devices": classes,
                "isolation": "process",
                "config": config.to_json(),
                "hosts": [],
                "runs": [],
            }
        )
        console = make_console()
        console.print(
            f"[bold]genbench[/] run {run_id}: {len(cells)} cells on the Ray cluster at {session.address} "
            f"({len(session.nodes())} nodes; {len(specs)} models, {', '.join(classes)}) -> {out_dir}"
        )
        for plan in plans:
            console.print(
                f"  {plan.placement.describe()}; {sum(p is plan for p in plan_of.values())} cells, "
                f"{len(plan.pipelines)} pipelines (planned on {plan.planned_on})"
            )
            for line in plan.left_out:
                console.print(f"  [dim]left out of the {plan.device} default matrix: {line}[/]")
        started = time.perf_counter()
        terminate_as_interrupt()
        executor = RayExecutor(
            session, run_id, plan_of, on_env=writer.add_host_env, retries=config.ray_retries
        )
        with cell_progress(console, len(cells)) as progress:
            task = progress.add_task("cells", total=len(cells))
            runner = Runner(
                config, Device("cpu"), writer, run_id, executor=executor,
                on_cell_start=lambda cell: progress.update(
                    task, description=f"started {cell.spec.name} {cell.pipeline.text} b{cell.batch_size} "
                    f"({plan_of[cell.cell_id].device})"
                ),
                on_cell_done=lambda result: progress.advance(task),
            )  # fmt: skip
            try:
                runner.run(cells)
            except KeyboardInterrupt:
                console.print(
                    f"[yellow]interrupted: outstanding tasks cancelled; {len(writer.rows)} finished cells kept in "
                    f"{out_dir}[/]"
                )
                return EXIT_INTERRUPTED
    finally:
        session.close()
    for table in summary_tables(writer.frame()):
        console.print(table)
    counts = writer.frame()["status"].value_counts().to_dict()
    hosts = sorted({str(h) for h in writer.frame()["host"].dropna()})
    console.print(
        f"{len(cells)} cells in {time.perf_counter() - started:.0f} s on {len(hosts)} hosts ({', '.join(hosts)}; "
        f"{', '.join(f'{v} {k}' for k, v in counts.items())}); tables in {out_dir}"
    )
    return 0


def _watched_run(
    config: RunConfig,
    device: Any,
    writer: Any,
    run_id: str,
    cells: list[Any],
    console: Any,
    out_dir: Path,
    started: float,
) -> int:
    """A soak (or a server run with --metrics-port): each cell's live panel instead of the progress bar.

    The worker appends its once-a-second rows to a live file; a thread here tails it into a rich
    Live panel until the cell ends (rich allows one live display at a time, so no progress bar).
    """
    import threading

    from bench.harness.runner import Runner
    from bench.harness.soak import live_path
    from bench.render.console import summary_tables
    from bench.render.live import follow_live

    following: dict[str, Any] = {}

    def start(cell: Any) -> None:
        stop = threading.Event()
        path = live_path(run_id, cell.cell_id)
        title = f"cell {cell.cell_id}: {cell.spec.name} {cell.pipeline.text} " + (
            f"at {cell.target_qps:g} qps"
            if cell.target_qps is not None
            else f"single-stream b{cell.batch_size}"
        )
        if config.metrics_port is not None:
            title += f"; Prometheus on :{config.metrics_port}/metrics"
        thread = threading.Thread(target=follow_live, args=(path, console, stop, title), daemon=True)
        following.update(stop=stop, thread=thread, path=path)
        thread.start()

    def done(result: Any) -> None:
        if following:
            following["stop"].set()
            following["thread"].join(timeout=5)
            following["path"].unlink(missing_ok=True)
        console.print(
            f"cell {result.row()['cell_id']}: {result.status} {result.row().get('soak_verdicts') or ''}"
        )

    runner = Runner(config, device, writer, run_id, on_cell_start=start, on_cell_done=done)
    try:
        runner.run(cells)
    except KeyboardInterrupt:
        if following:
            following["stop"].set()
            following["path"].unlink(missing_ok=True)
        console.print(f"[yellow]interrupted: {len(writer.rows)} finished cells kept in {out_dir}[/]")
        return EXIT_INTERRUPTED
    for table in summary_tables(writer.frame()):
        console.print(table)
    console.print(f"{len(cells)} cells in {time.perf_counter() - started:.0f} s; tables in {out_dir}")
    return 0


def _third_axis(config: RunConfig) -> str:
    """What multiplies models x pipelines: batch sizes, or a server run's rates or peak search."""
    if config.scenario == "server":
        if config.find_peak:
            return (
                f"a peak search at p99 <= {config.slo_p99_ms or f'{config.slo_x:g}x batch-1'} ms-equivalent"
            )
        rates = config.target_qps or ()
        return (
            f"{len(rates)} rates ({', '.join(f'{q:g}' for q in rates)} qps), batches up to {config.max_batch}"
        )
    return f"{len(config.batch_sizes)} batch sizes"


def offline_lines(frame: Any) -> list[str]:
    """The offline answer per model x pipeline: its best batch and items/s."""
    lines = []
    ok = frame[frame["best_batch_size"].notna() & (frame["batch_size"] == frame["best_batch_size"])]
    for row in ok.itertuples(index=False):
        lines.append(
            f"offline: {row.model} ({row.size}) {row.pipeline}: best batch {int(row.best_batch_size)}, "
            f"{row.throughput_items_s:.4g} {row.item}/s"
        )
    return lines


def terminate_as_interrupt() -> None:
    """SIGTERM (``kill``, a CI job's timeout, a scheduler) ends the run as Ctrl-C does: the executor kills the
    running cell's worker and the finished rows stay. Python's default for SIGTERM is to exit at once,
    which left the worker (in its own session) serving on alone, holding its --metrics-port."""
    import signal
    import threading

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def new_run_id(kind: str) -> str:
    """``20261202-031500-cpu-3f9a``: the time for people, four random hex digits so that two runs
    started in the same second never share an id (or a default folder)."""
    return f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(2)}"


def claim_run_folder(out_dir: Path) -> None:
    """Make ``out_dir`` this run's, or refuse in one line: it must be new or empty, and is claimed atomically.

    The claim is an ``env.json`` created with O_EXCL (the writer replaces it with the real one at
    once): of two runs started at the same moment on the same folder, exactly one gets it.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        raise UsageError(f"--out {out_dir} lies under a file, not a folder") from None
    except OSError as exc:
        raise EnvironmentProblem(f"cannot create --out {out_dir}: {exc.strerror or exc}") from None
    held = sorted(p.name for p in out_dir.iterdir())
    if "cells.csv" in held:
        raise UsageError(f"{out_dir} already holds a run; choose another --out or remove it")
    if held:
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise UsageError(f"--out {out_dir} is not empty (holds {shown}); choose another --out or empty it")
    try:
        os.close(os.open(out_dir / "env.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        raise UsageError(f"{out_dir} was just claimed by another run; choose another --out") from None
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write into --out {out_dir}: {exc.strerror or exc}") from None


def cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from bench.harness.inventory import describe_model
    from bench.harness.plan import resolve_models
    from bench.render.console import make_console
    from optimizers.registry import all_passes

    device = device_from_flag(args.device)
    console = make_console()
    try:
        specs = resolve_models(None, tuple(args.custom_models or ()), getattr(args, "weights", None))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    models = Table(
        title=(
            "models (GFLOPs at batch 1: per item of a forward call, and per UNet call and VAE decode of a sample "
            "model, counted by torch.utils.flop_counter; per token of a generate model, estimated as 2 x params)"
        ),
        title_justify="left",
    )
    for col in (
        "model",
        "family",
        "workload",
        "size",
        "params",
        "GFLOPs",
        "inputs (batch 1)",
        "output",
        "item",
    ):
        models.add_column(col, justify="right" if col in ("params", "GFLOPs") else "left")
    for spec in specs:
        for size in spec.sizes:
            info = describe_model(spec, size)
            models.add_row(
                spec.name, spec.family, spec.workload, size, f"{info.params / 1e6:.2f}M", info.gflops_text(),
                info.input_shapes, info.output_shape, spec.item,
            )  # fmt: skip
    console.print(models)
    passes = Table(title=f"passes (checked against {device})", title_justify="left")
    for col in ("pass", "takes", "gives", "runs here", "what it does"):
        passes.add_column(col)
    for name, cls in sorted(all_passes().items()):
        reason = _applies(cls, device)
        passes.add_row(
            name,
            "/".join(cls.consumes),
            cls.produces or "same",
            "yes" if reason is None else f"no: {reason}",
            cls.summary,
        )
    console.print(passes)
    from bench.runtimes import load_entry_points as runtime_plugins
    from optimizers.registry import PLUGIN_FAILURES

    for failure in (*PLUGIN_FAILURES, *runtime_plugins()):
        console.print(f"[yellow]plugin not loaded:[/] {failure}")
    return 0


def _applies(cls: type, device: Any) -> str | None:
    """Whether a pass runs on ``device``, asked of its default configuration (None: yes)."""
    try:
        step = cls()
    except Exception:  # a plugin pass that needs an argument
        return None
    return step.applies_to(device)


def cmd_env(args: argparse.Namespace) -> int:
    from bench.measure.environment import capture_environment

    print(json.dumps(capture_environment(), indent=2, default=str))
    return 0

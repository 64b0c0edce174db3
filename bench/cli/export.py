"""`export`: a measured cell's artifact in deployable form, with manifest.json and a Triton model repository.

``register`` only builds the parser; torch, onnx and the harness are imported inside
the handler, so ``python -m bench --help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from bench.core.errors import UsageError

Handler = Callable[[argparse.Namespace], int]

EXPORT_EXAMPLES = """examples:
  python -m bench export results/cpu-run --cell 4 --out exports/dcgan-ort
  python -m bench export --model unet --size small --pipeline int8 --batch-size 8 --out exports/unet-int8
  python -m bench export results/gpu-run --cell 12 --out exports/vae-trt --max-batch 16 --max-queue-delay-ms 2

writes into --out (a new or empty folder):
  model.onnx (+ model.onnx.data) | model.plan | model.pt2   the artifact as a deployment loads it
  manifest.json    inputs/outputs, pipeline, the cell's measured numbers and fidelity, hardware, versions
  triton/<model>/config.pbtxt, triton/<model>/1/model.onnx|model.plan   for ONNX and TensorRT artifacts
"""


def register(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    p = sub.add_parser(
        "export",
        help="write a cell's optimized model in deployable form, with its manifest and a Triton layout",
        description="Rebuild a measured cell (RUN --cell ID), or build one afresh (--model, --pipeline, "
        "--batch-size), and write it as a deployment needs it.",
        epilog=EXPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", nargs="?", type=Path, metavar="RUN", help="a run folder (or its cells.csv)")
    p.add_argument("--cell", type=int, metavar="ID", help="the cell_id of RUN's row to export")
    p.add_argument("--model", metavar="M", help="build afresh: a reference model or PKG.MODULE:FACTORY")
    p.add_argument("--size", help="build afresh: tiny, small or base (default: small)")
    p.add_argument("--pipeline", metavar="P", help="build afresh: one pipeline, e.g. ort or fp16+tensorrt")
    p.add_argument("--batch-size", type=int, metavar="B", help="build afresh: the batch size")
    p.add_argument("--seed", type=int, help="build afresh: seed of the inputs and calibration (default: 0)")
    p.add_argument(
        "--device", help="cpu, cuda or cuda:N (default: the row's device; afresh, the best present)"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder, new or empty")
    p.add_argument(
        "--max-batch", type=int, metavar="N",
        help="Triton's max_batch_size (default: the cell's batch size)",
    )  # fmt: skip
    p.add_argument(
        "--max-queue-delay-ms", type=float, default=5.0, metavar="MS",
        help="Triton's dynamic batching max_queue_delay (default: 5 ms)",
    )  # fmt: skip
    return {"export": cmd_export}


def _check_mode(args: argparse.Namespace) -> None:
    """RUN --cell ID, or --model with --pipeline and --batch-size: never both, never half of one."""
    fresh = [
        f"--{n.replace('_', '-')}"
        for n in ("model", "size", "pipeline", "batch_size", "seed")
        if getattr(args, n) is not None
    ]
    if args.run is not None or args.cell is not None:
        if fresh:
            raise UsageError(
                f"give RUN --cell ID or --model/--pipeline/--batch-size, not both ({fresh[0]} with a run's cell)"
            )
        if args.run is None:
            raise UsageError("--cell needs RUN, the run folder it is a cell of")
        if args.cell is None:
            raise UsageError(f"which cell of {args.run}? give --cell ID (its cell_id)")
        return
    if args.model is None:
        raise UsageError("give RUN --cell ID, or --model M --pipeline P --batch-size B to build afresh")
    wanted = [
        flag
        for flag, value in (("--pipeline", args.pipeline), ("--batch-size", args.batch_size))
        if value is None
    ]
    if wanted:
        raise UsageError(f"--model needs {' and '.join(wanted)}")


def cmd_export(args: argparse.Namespace) -> int:
    _check_mode(args)
    from bench.export.build import CellRequest, request_from_run
    from bench.export.bundle import ExportOptions, check_out, export_cell

    options = ExportOptions(max_batch=args.max_batch, max_queue_delay_ms=args.max_queue_delay_ms)
    source = None
    if args.run is not None:
        request, source = request_from_run(args.run, args.cell, args.device)
    else:
        from bench.cli.common import device_from_flag

        device = str(device_from_flag(args.device))
        seed = args.seed if args.seed is not None else 0
        request = CellRequest(
            args.model, args.size or "", args.pipeline, args.batch_size, device, seed,
            batch_sizes=(args.batch_size,),
        )  # fmt: skip
    check_out(args.out)  # before the build: a full folder is refused at once
    result = export_cell(request, args.out, options, source)
    manifest = result.manifest
    artifact = manifest["artifact"]
    if artifact["exported"]:
        written = ", ".join(f["path"] for f in artifact["files"])
        print(
            f"exported {manifest['model']['name']} {manifest['pipeline']['text']} b{request.batch_size}: {written}"
        )
    else:
        print(f"not exported ({artifact['kind']}): {artifact['reason']}")
    check = manifest["verification"]
    if check.get("ran"):
        within = check.get("within_recorded_error")
        verdict = "" if within is None else (" (within the row's)" if within else " (ABOVE the row's)")
        print(
            f"  reproduced here: max abs err {check['max_abs_err']:.3g}, PSNR {check['psnr_db']:.1f} dB{verdict}"
        )
    elif artifact["exported"]:
        print(f"  not run here: {check.get('reason')}")
    triton = manifest["triton"]
    if triton.get("written"):
        print(f"  triton: {args.out / triton['config']}")
    print(f"  manifest: {args.out / 'manifest.json'}")
    return 0

"""What a Ray task runs on a node: one cell, exactly as a local run runs it, and the node's environment.

``run_cell`` is a generator task. Its first message says where it started (Ray's node
id, the host, the pid), so the driver starts the cell's deadline when the cell starts,
not while it waits in Ray's queue; its second carries the cell's reply: the row, raw
samples and tables encoded as the worker process encodes them (``encode_reply``:
plain JSON, checked on the driver by ``decode_reply``), and the environment of this
node as env.json records it.

Inside, the cell runs through ``ProcessExecutor``: a fresh worker process forked from
a clean fork server, with the same measurement code, timeout and failure rows as a
local run. What is kept between cells on a node, and why it is safe:

- the fork server and its ``ProcessExecutor`` (per Ray worker process and run): a
  worker forked from it starts from the same clean state as a local one, and starting
  a server costs seconds (its imports) where a fork costs milliseconds. It is
  restarted when Ray changes the environment a fork would inherit
  (``CUDA_VISIBLE_DEVICES``, the GPU Ray gave this task; ``OMP_NUM_THREADS``);
- the fp32 references, once per node and run: the first cell of a (model, size,
  batch) on the node computes its inputs and fp32 output into the node's run folder
  (``SharedReferences``), every later cell on the node loads them with
  ``torch.load(weights_only=True)``, which cannot run code. The model itself is rebuilt
  in each cell's worker from its seeded spec, as in a local run: a module object
  cannot be handed to a fresh process without pickling the user's model code, which
  is the state isolation exists to keep out.

The node's run folder (``node_folder``) is removed by ``remove_node_folder``, a task the
driver sends to each node when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.core.text import one_line

#: prefix of a node's run folder under the node's temp folder: the shared references, cell logs
NODE_FOLDER_PREFIX = "genbench-ray-"
#: the environment variables a forked worker inherits from its fork server that Ray sets per task
FORK_ENV = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")

_executors: dict[tuple[str, str, str], Any] = {}  # (run_id, device, config as JSON) -> ProcessExecutor
_environments: dict[tuple[str, str], dict[str, Any]] = {}  # (run_id, device) -> env.json's entry
_fork_env: tuple[str | None, ...] | None = None  # FORK_ENV when the fork server was last used


def node_folder(run_id: str, node_id: str) -> Path:
    """This node's folder for the run; its node id in the name, as two Ray nodes may share one machine."""
    return Path(tempfile.gettempdir()) / f"{NODE_FOLDER_PREFIX}{run_id}-{node_id[:12]}"


def _this_node() -> dict[str, Any]:
    import ray

    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def run_cell(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The Ray task of one cell (module docstring): a ``started`` message, then ``done`` or ``failed``."""
    here = _this_node()
    yield {"kind": "started", **here}
    try:
        reply, env = _run_here(job, here["node_id"])
    except Exception as exc:  # the node cannot run cells (no CUDA, a model that does not import here)
        yield {"kind": "failed", "error": one_line(exc, 400)}
        return
    yield {"kind": "done", "reply": reply, "env": env}


def _run_here(job: dict[str, Any], node_id: str) -> tuple[bytes, dict[str, Any]]:
    from bench.core.device import check_available, parse_device
    from bench.harness.config import RunConfig
    from bench.harness.worker import encode_reply

    config = RunConfig.from_json(job["config"])
    device = parse_device(job["device"])  # cuda is cuda:0, the GPU Ray made visible to this task
    check_available(device)
    executor = _executor(job["run_id"], config, device, node_id)
    record = executor.run(_cell(job["cell"], config))
    reply = encode_reply(
        record.row(), list(record.samples_ms), phases=list(record.phase_samples), tables=record.tables
    )
    return reply, _environment(job["run_id"], config, device, node_id)


def _cell(fields: dict[str, Any], config: Any) -> Any:
    """The planned cell rebuilt from its names and numbers, as a worker process rebuilds it."""
    from bench.harness.plan import Cell, resolve_models
    from optimizers.registry import parse_pipeline

    name = fields["model"]
    models, custom = ((), (name,)) if fields["custom"] else ((name,), ())
    (spec,) = resolve_models(models, custom, config.weights)
    return Cell(
        fields["cell_id"], spec, fields["size"], parse_pipeline(fields["pipeline"]), fields["batch_size"],
        fields["repeat"], fields["target_qps"],
    )  # fmt: skip


def _executor(run_id: str, config: Any, device: Any, node_id: str) -> Any:
    """This Ray worker's executor for the run's cells of ``device``, its scratch the node's run folder."""
    import json

    from bench.harness.isolation import ProcessExecutor

    global _fork_env
    fork_env = tuple(os.environ.get(name) for name in FORK_ENV)
    if _fork_env is not None and fork_env != _fork_env:
        stop_fork_server()  # a worker forked from it would see the GPU of an earlier task
    _fork_env = fork_env
    key = (run_id, str(device), json.dumps(config.to_json(), sort_keys=True))
    if key not in _executors:
        executor = ProcessExecutor(config, device, run_id)
        shutil.rmtree(executor.scratch, ignore_errors=True)  # its own scratch: the node's folder is shared
        executor.scratch = node_folder(run_id, node_id)
        (executor.scratch / "references").mkdir(parents=True, exist_ok=True)
        _executors[key] = executor
    return _executors[key]


def stop_fork_server() -> None:
    """Stop multiprocessing's fork server (private API, CPython 3.8+, as ProcessExecutor.close does)."""
    from multiprocessing import forkserver

    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
    if stop is not None:
        with contextlib.suppress(Exception):
            stop()


def _environment(run_id: str, config: Any, device: Any, node_id: str) -> dict[str, Any]:
    """env.json's entry for this node and device class, captured once per Ray worker and run."""
    key = (run_id, str(device))
    if key not in _environments:
        import torch

        from bench.measure.environment import capture_environment
        from bench.measure.fingerprint import hardware_fingerprint

        _environments[key] = {
            **capture_environment(),
            "run_id": run_id,
            "device": str(device),
            "fingerprint": hardware_fingerprint(device),
            "threads": config.threads if config.threads is not None else torch.get_num_threads(),
            "isolation": "process",
            "config": config.to_json(),
            "ray_node_id": node_id,
        }
    return _environments[key]


def plan_class(config_json: dict[str, Any], device_text: str) -> dict[str, Any]:
    """The Ray task that plans a device class on a node of that class: which pipelines apply there.

    Default pipelines depend on the device (bf16 only where the CPU computes it, GPU-only
    passes), so a class is planned where its cells will run, as a local run plans on its
    own machine. Pipelines named with --pipelines are only parsed: a node whose device
    does not work then gives error rows that name it, and the other nodes' cells run.
    Also returns the node's CPU count, a CPU cell's default thread count.
    """
    import ray

    from bench.core.device import check_available, parse_device
    from bench.harness.config import RunConfig
    from bench.harness.plan import excluded_reason, resolve_pipelines

    config = RunConfig.from_json(config_json)
    device = parse_device(device_text)
    left_out: list[str] = []
    if (
        config.pipelines is not None
    ):  # parsed only: a node whose device is broken gives error rows, not no run
        pipelines = resolve_pipelines(config.pipelines, device)
    else:
        from bench.harness.plan import default_pipelines

        check_available(device)
        pipelines = resolve_pipelines(None, device)
        for pipeline in default_pipelines(device):
            reason = excluded_reason(pipeline, device)
            if reason is not None:
                left_out.append(f"{pipeline.text} ({reason})")
    node_id = ray.get_runtime_context().get_node_id()
    cpus = next(
        (float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("NodeID") == node_id),
        float(os.cpu_count() or 1),
    )
    return {
        "pipelines": [p.text for p in pipelines],
        "left_out": left_out,
        "node_id": node_id,
        "host": socket.gethostname(),
        "cpus": cpus,
    }


def remove_node_folder(run_id: str) -> str:
    """The Ray task that removes this node's run folder when the run ends; returns the node's id."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    shutil.rmtree(node_folder(run_id, node_id), ignore_errors=True)
    return node_id

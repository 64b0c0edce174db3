"""Cells as Ray tasks on a two-node cluster started here: rows in one folder, placement, faults, Ctrl-C.

One cluster for the module (starting it takes seconds): a "CPU box" head node with two
CPUs and the custom resource ``cpu_box``, and a "GPU" node with one CPU, one GPU as Ray
counts it (this machine has no CUDA: a cuda cell placed there is an error row, which
still says where it ran) and the resource ``gpu_box``. Both nodes share this host, so a
row's node is read from the ``ray node <id>`` in its notes.
"""

from __future__ import annotations

import math
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.core.device import Device
from bench.harness.config import RunConfig
from bench.harness.isolation import ProcessExecutor
from bench.harness.plan import Cell, plan_cells, resolve_models
from bench.harness.runner import Runner
from bench.results.store import load_run
from bench.results.writer import ResultWriter
from optimizers.registry import parse_pipeline
from tests.bench.harness.faulty_models import FAULT_BATCH, _factory
from tests.conftest import FAST

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'genbench[ray]'")

from bench.cluster import node as node_module  # noqa: E402  (after the skip: it names Ray's API)
from bench.cluster.driver import ClassPlan, RayExecutor, connect, plan_classes  # noqa: E402

HERE = "tests.bench.harness.test_ray"
MARKS = "GENBENCH_TEST_RAY_MARKS"  # a folder the nodes' cells leave marks in (inherited from the raylets)
#: the cluster has a GPU by Ray's count, so the default class would be cuda: these cells are CPU cells
RAY = {**FAST, "isolation": "process", "ray": "test", "threads": 1, "devices": ("cpu",)}


# ------------------------------------------------------------------ models that fail on a node
def _kill_the_ray_worker() -> None:
    """SIGKILL the Ray worker running this cell: the cell's worker -> its fork server -> the Ray worker."""
    import psutil

    os.kill(psutil.Process(os.getppid()).ppid(), signal.SIGKILL)
    os._exit(1)


def kills_its_ray_worker():  # noqa: ANN201
    return _factory(_kill_the_ray_worker)


def kills_its_ray_worker_once():  # noqa: ANN201
    def once() -> None:
        mark = Path(os.environ[MARKS]) / "killed-once"
        if not mark.exists():
            mark.touch()
            _kill_the_ray_worker()

    return _factory(once)


def hangs():  # noqa: ANN201
    def forever() -> None:
        (Path(os.environ[MARKS]) / f"hang-{os.getpid()}").touch()
        while True:
            time.sleep(1)

    return _factory(forever)


# ------------------------------------------------------------------ the cluster
@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from ray.cluster_utils import Cluster

    marks = tmp_path_factory.mktemp("ray-marks")
    saved = {k: os.environ.get(k) for k in (MARKS, "GENBENCH_CACHE_DIR")}
    os.environ[MARKS] = str(marks)  # the raylets, and so every worker, inherit these
    os.environ["GENBENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("genbench-cache"))
    made = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "resources": {"cpu_box": 2}, "include_dashboard": False},
    )
    try:
        made.add_node(num_cpus=1, num_gpus=1, resources={"gpu_box": 1})
        made.wait_for_nodes()
        ids = {n.node_id: n for n in [made.head_node, *made.worker_nodes]}
        yield {
            "address": made.address,
            "head": made.head_node.node_id,
            "gpu": next(i for i in ids if i != made.head_node.node_id),
            "marks": marks,
        }
    finally:
        if ray.is_initialized():
            ray.shutdown()
        made.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def session(cluster: dict[str, Any]) -> Iterator[Any]:
    joined = connect(cluster["address"])
    try:
        yield joined
    finally:
        joined.close()


def _node_of(notes: str) -> str:
    """The Ray node a row was measured on, from its notes (``ray node <first 12 hex digits>``)."""
    return notes.split("ray node ", 1)[1][:12]


def _run(
    session: Any,
    tmp_path: Path,
    config: RunConfig,
    executor_class: type[RayExecutor] = RayExecutor,
    on_cell_done: Callable[[Any], None] = lambda result: None,
) -> tuple[pd.DataFrame, ResultWriter, list[ClassPlan]]:
    plans = plan_classes(session, config)
    specs = resolve_models(config.models, config.custom_models)
    cells: list[Cell] = []
    plan_of: dict[int, ClassPlan] = {}
    for plan in plans:
        for cell in plan_cells(
            specs, config.size, [parse_pipeline(t) for t in plan.pipelines], config.batch_sizes
        ):
            cells.append(Cell(len(cells), cell.spec, cell.size, cell.pipeline, cell.batch_size))
            plan_of[len(cells) - 1] = plan
    writer = ResultWriter(tmp_path / "run")
    writer.write_env({"run_id": "ray-test", "runs": []})
    executor = executor_class(
        session, "ray-test", plan_of, on_env=writer.add_host_env, retries=config.ray_retries
    )
    Runner(config, Device("cpu"), writer, "ray-test", executor=executor, on_cell_done=on_cell_done).run(cells)
    return writer.frame(), writer, plans


# ------------------------------------------------------------------ tests
def test_cells_land_in_one_folder_each_on_a_node_of_its_class(
    session: Any, cluster: dict[str, Any], tmp_path: Path
) -> None:
    config = RunConfig(
        **{
            **RAY,
            "models": ("dcgan",),
            "pipelines": ("fp32",),
            "batch_sizes": (1, 2),
            "devices": ("cpu", "cuda"),
        },
        ray_resources=("cpu_box@cpu", "gpu_box@cuda"),
    )
    frame, _, plans = _run(session, tmp_path, config)
    assert [p.device for p in plans] == ["cpu", "cuda"]
    assert list(frame["cell_id"]) == [0, 1, 2, 3]  # in cell order, whatever order they ended in
    cpu, cuda = frame[frame["device"] == "cpu"], frame[frame["device"] == "cuda"]
    assert list(cpu["status"]) == ["ok", "ok"], cpu["reason"].tolist()
    assert {_node_of(n) for n in cpu["notes"]} == {cluster["head"][:12]}  # never the GPU node
    assert {_node_of(n) for n in cuda["notes"]} == {cluster["gpu"][:12]}  # never the CPU box
    assert all("CUDA is not available" in r for r in cuda["reason"]), cuda["reason"].tolist()
    assert set(cpu["hw_id"].dropna()) and set(cpu["isolation"]) == {"process"}
    assert set(frame["host"]) == {os.uname().nodename}
    run = load_run(tmp_path / "run")
    assert len(run.cells) == 4 and run.samples["cell_id"].isin([0, 1]).all()
    (entry,) = run.sources  # the CPU box's environment; the GPU node measured nothing
    assert entry["ray_node_id"] == cluster["head"] and entry["device"] == "cpu" and entry["threads"] == 1
    assert not list(
        Path(tempfile.gettempdir()).glob(f"{node_module.NODE_FOLDER_PREFIX}ray-test-*")
    )  # the nodes' folders are gone


def test_a_cell_through_ray_is_measured_as_a_local_one(session: Any, tmp_path: Path) -> None:
    config = RunConfig(
        **{**RAY, "models": ("dcgan",), "pipelines": ("fp32", "channels_last"), "batch_sizes": (2,)},
    )
    remote, _, _ = _run(session, tmp_path / "ray", config)
    local_config = RunConfig(**{**FAST, "isolation": "process", "threads": 1, "models": ("dcgan",)})
    writer = ResultWriter(tmp_path / "local")
    cells = plan_cells(
        resolve_models(("dcgan",), ()),
        "tiny",
        [parse_pipeline("fp32"), parse_pipeline("channels_last")],
        (2,),
    )
    Runner(
        local_config,
        Device("cpu"),
        writer,
        "local",
        executor=ProcessExecutor(local_config, Device("cpu"), "local"),
    ).run(cells)
    local = writer.frame()
    same = [
        "status", "host", "device", "device_name", "hw_id", "pipeline", "threads", "isolation", "precision",
        "params", "model_bytes", "gflops_per_item", "psnr_db", "max_abs_err",
    ]  # fmt: skip
    pd.testing.assert_frame_equal(remote[same], local[same])


def test_a_killed_ray_worker_is_retried_then_an_error_row_and_the_run_goes_on(
    session: Any, tmp_path: Path
) -> None:
    config = RunConfig(
        **{
            **RAY,
            "models": (),
            "pipelines": ("fp32",),
            "batch_sizes": (FAULT_BATCH, 1),
            "custom_models": (f"{HERE}:kills_its_ray_worker", f"{HERE}:kills_its_ray_worker_once"),
        },
        ray_retries=1,
    )
    frame, _, _ = _run(session, tmp_path, config)
    rows = {
        (m.rsplit(":", 1)[1], b): r
        for m, b, r in zip(frame["model"], frame["batch_size"], frame.to_dict("records"), strict=True)
    }
    always = rows[("kills_its_ray_worker", FAULT_BATCH)]
    assert always["status"] == "error" and always["reason"].startswith("Ray: WorkerCrashedError"), always[
        "reason"
    ]
    assert "\n" not in always["reason"]
    assert rows[("kills_its_ray_worker_once", FAULT_BATCH)]["status"] == "ok"  # the retry measured it
    assert (
        rows[("kills_its_ray_worker", 1)]["status"] == "ok"
        and rows[("kills_its_ray_worker_once", 1)]["status"] == "ok"
    )


class _Impatient(RayExecutor):
    """Cancels a task as soon as its cell hangs, long before the cell's own timeout would end it."""

    marks: Path

    def allowed_s(self, plan: ClassPlan) -> float:
        return 1.0 if _hung_pids(self.marks) else math.inf


def _hung_pids(marks: Path) -> list[int]:
    return [int(p.name.split("-")[1]) for p in marks.glob("hang-*")]


def _gone(pids: list[int], within_s: float = 30.0) -> bool:
    import psutil

    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            return True
        time.sleep(0.2)
    return False


def test_a_task_past_its_deadline_is_cancelled_and_its_worker_killed(
    session: Any, cluster: dict[str, Any], tmp_path: Path
) -> None:
    config = RunConfig(
        **{
            **RAY,
            "models": (),
            "pipelines": ("fp32",),
            "batch_sizes": (FAULT_BATCH,),
            "custom_models": (f"{HERE}:hangs",),
        },
        cell_timeout_s=600.0,
    )
    for old in cluster["marks"].glob("hang-*"):
        old.unlink()
    _Impatient.marks = cluster["marks"]
    started = time.monotonic()
    frame, _, _ = _run(session, tmp_path, config, executor_class=_Impatient)
    assert time.monotonic() - started < 120  # not the cell's 600 s
    (row,) = frame.to_dict("records")
    assert row["status"] == "timeout" and "cancelled by the driver" in row["reason"], row["reason"]
    pids = _hung_pids(cluster["marks"])
    assert pids and _gone(pids)


def test_ctrl_c_cancels_outstanding_tasks_and_keeps_finished_rows(
    session: Any, cluster: dict[str, Any], tmp_path: Path
) -> None:
    for old in cluster["marks"].glob("hang-*"):
        old.unlink()

    def interrupt(result: Any) -> None:  # the first row is written; then Ctrl-C, once the hung cell runs
        end = time.monotonic() + 60
        while not _hung_pids(cluster["marks"]) and time.monotonic() < end:
            time.sleep(0.2)
        raise KeyboardInterrupt

    config = RunConfig(
        **{
            **RAY,
            "models": (),
            "pipelines": ("fp32",),
            "batch_sizes": (1, FAULT_BATCH),
            "custom_models": (f"{HERE}:hangs",),
        }
    )
    with pytest.raises(KeyboardInterrupt):
        _run(session, tmp_path, config, on_cell_done=interrupt)
    run = load_run(tmp_path / "run")
    assert list(run.cells["batch_size"]) == [1] and list(run.cells["status"]) == ["ok"]
    pids = _hung_pids(cluster["marks"])
    assert pids and _gone(pids)  # the hung cell's worker did not outlive the cancel


def test_the_command_line_writes_one_run_that_report_reads_with_device_classes_side_by_side(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    from bench.cli import main

    out, md = tmp_path / "cli", tmp_path / "report.md"
    sigterm = signal.getsignal(signal.SIGTERM)  # run makes SIGTERM a Ctrl-C: give pytest its own back
    try:
        code = main(
            [
                "run", "--ray", cluster["address"], "--devices", "cpu,cuda", "--ray-resource", "cpu_box@cpu",
                "--ray-resource", "gpu_box@cuda", "--models", "dcgan", "--size", "tiny", "--pipelines", "fp32",
                "--batch-sizes", "1", "--time-budget", "0.2", "--min-samples", "3", "--warmup", "0",
                "--threads", "1", "--out", str(out),
            ]
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    assert code == 0
    run = load_run(out)
    assert list(run.cells["device"]) == ["cpu", "cuda"]
    assert run.env["ray"]["address"] == cluster["address"] and len(run.env["ray"]["nodes"]) == 2
    assert [s["device"] for s in run.sources] == ["cpu"]  # the node that measured something
    assert main(["report", str(out), "--markdown", str(md)]) == 0
    header = next(line for line in md.read_text().splitlines() if "x fp32" in line)
    assert "cuda image/s" in header and f"{run.cells['device_name'].iloc[0]} image/s" in header

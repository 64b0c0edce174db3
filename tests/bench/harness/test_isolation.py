"""One process per cell: crashes, hangs, leaks and sys.exit end one cell, and the run goes on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.core.device import Device
from bench.harness import isolation
from bench.harness.config import RunConfig
from bench.harness.isolation import SCRATCH_PREFIX, ProcessExecutor, remove_stale_scratch
from bench.harness.plan import Cell, plan_cells, resolve_models
from bench.harness.reference import SharedReferences
from bench.harness.runner import Runner
from bench.harness.worker import decode_reply, encode_reply
from bench.results.writer import ResultWriter
from optimizers.registry import parse_pipeline
from reference_models import get_model
from tests.conftest import FAST

FAULTY = "tests.bench.harness.faulty_models"


def _run(
    tmp_path: Path, factory: str, batch_sizes: tuple[int, ...] = (1, 3), **config: object
) -> pd.DataFrame:
    cfg = RunConfig(
        **{**FAST, "isolation": "process", "models": (), "custom_models": (f"{FAULTY}:{factory}",), **config}
    )  # type: ignore[arg-type]
    writer = ResultWriter(tmp_path / "run")
    specs = resolve_models(cfg.models, cfg.custom_models)
    cells = plan_cells(specs, "custom", [parse_pipeline("fp32")], batch_sizes)
    Runner(cfg, Device("cpu"), writer, run_id="isolated").run(cells)
    return writer.frame()


def test_a_segfault_is_a_crashed_row_and_the_other_cells_run(tmp_path: Path) -> None:
    frame = _run(tmp_path, "segfault", batch_sizes=(1, 3, 2))
    assert list(frame["status"]) == ["ok", "crashed", "ok"], frame["reason"].tolist()
    assert "SIGSEGV" in frame.iloc[1]["reason"]
    assert set(frame["isolation"]) == {"process"}
    assert frame.iloc[0]["n_samples"] >= 3  # the cell before the crash was measured, not just listed


def test_a_hanging_cell_is_killed_at_the_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    frame = _run(tmp_path, "hang", batch_sizes=(3, 1), cell_timeout_s=8.0)
    assert time.monotonic() - started < 60  # 8 s for the hung cell, seconds for the other
    assert list(frame["status"]) == ["timeout", "ok"], frame["reason"].tolist()
    assert "--cell-timeout" in frame.iloc[0]["reason"]


def test_sys_exit_in_forward_is_an_error_row_in_both_isolations(tmp_path: Path) -> None:
    for mode in ("process", "none"):
        frame = _run(tmp_path / mode, "exits", isolation=mode)
        assert list(frame["status"]) == ["ok", "error"], (mode, frame["reason"].tolist())
        assert "SystemExit(3)" in frame.iloc[1]["reason"]


def test_a_sigkill_while_the_oom_counter_rises_is_an_oom_row(tmp_path: Path, monkeypatch) -> None:
    counts = iter([5, 5, 6])  # before cell 0, before cell 1, after cell 1's death
    monkeypatch.setattr(isolation, "oom_kills", lambda: next(counts))
    frame = _run(tmp_path, "sigkill")
    assert list(frame["status"]) == ["ok", "oom"], frame["reason"].tolist()
    assert "OOM killer" in frame.iloc[1]["reason"]


def test_a_sigkill_without_the_oom_counter_is_a_crash(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(isolation, "oom_kills", lambda: None)  # cgroup counters unreadable
    frame = _run(tmp_path, "sigkill", batch_sizes=(3,))
    assert list(frame["status"]) == ["crashed"]
    assert "SIGKILL" in frame.iloc[0]["reason"]


def test_a_cells_memory_is_its_own(tmp_path: Path) -> None:
    """In one process the 2 GiB the first cell leaked would be in every later cell's peak RSS."""
    frame = _run(tmp_path, "leaks_2gib", batch_sizes=(3, 1))
    assert list(frame["status"]) == ["ok", "ok"], frame["reason"].tolist()
    leaky, tiny = frame.iloc[0], frame.iloc[1]
    assert leaky["peak_host_rss_mb"] > 2048
    assert tiny["peak_host_rss_mb"] < 1024
    # the empty worker's RSS (interpreter, torch) is the part of the peak that is not the cell's
    assert 50 < tiny["rss_baseline_mb"] < tiny["peak_host_rss_mb"]


def test_process_and_in_process_rows_agree_on_everything_but_timing(tmp_path: Path) -> None:
    frames = {}
    for mode in ("process", "none"):
        cfg = RunConfig(**{**FAST, "isolation": mode, "models": ("dcgan",), "pipelines": ("fp32", "bf16")})
        writer = ResultWriter(tmp_path / mode)
        cells = plan_cells(
            [get_model("dcgan")], "tiny", [parse_pipeline("fp32"), parse_pipeline("bf16")], (2,)
        )
        Runner(cfg, Device("cpu"), writer, run_id=mode).run(cells)
        frames[mode] = writer.frame()
    same = [
        "status",
        "pipeline",
        "precision",
        "params",
        "model_bytes",
        "gflops_per_item",
        "psnr_db",
        "max_abs_err",
    ]
    pd.testing.assert_frame_equal(frames["process"][same], frames["none"][same])
    assert list(frames["process"]["isolation"]) == ["process", "process"]


def test_a_reference_is_computed_once_and_loaded_by_later_workers(tmp_path: Path) -> None:
    spec = get_model("dcgan")
    cell = Cell(0, spec, "tiny", parse_pipeline("fp32"), 2)
    first = SharedReferences(Device("cpu"), 0, tmp_path).get(cell)
    saved = SharedReferences(Device("cpu"), 0, tmp_path).path(cell)
    assert saved.is_file()
    again = SharedReferences(Device("cpu"), 0, tmp_path).get(cell)  # a new process would start like this
    assert torch.equal(again.output, first.output)
    assert all(torch.equal(a, b) for a, b in zip(again.inputs, first.inputs, strict=True))


def test_a_worker_reply_is_plain_json_and_malformed_ones_are_refused() -> None:
    row, samples, _, error, _ = decode_reply(encode_reply({"status": "ok", "x": float("nan")}, [1.0, 2.0]))
    assert row is not None and row["status"] == "ok" and samples == [1.0, 2.0] and error is None
    for bad in (
        b"[1, 2]",
        b'{"row": 3}',
        b'{"row": null, "samples": ["a"]}',
        b'{"row": null, "tables": {"other.csv": {}}}',
        b'{"row": null, "tables": {"probes.csv": {"columns": ["x"], "rows": []}}}',
    ):
        with pytest.raises(ValueError):
            decode_reply(bad)
    with pytest.raises(ValueError):
        decode_reply(b"\x80\x04K\x01.")  # a pickle is not JSON


def test_a_serving_cell_s_tables_cross_the_process_boundary_column_major() -> None:
    requests = ({"probe": 0, "request_id": 3, "arrival_s": 0.5, "end_s": float("nan")},)
    data = encode_reply({"status": "ok"}, [], tables={"requests.csv": requests})
    assert b'"request_id"' in data and data.count(b'"request_id"') == 1  # names once, not per row
    *_, tables = decode_reply(data)
    (back,) = tables["requests.csv"]
    assert back["request_id"] == 3 and back["arrival_s"] == 0.5 and back["batch_id"] is None


def test_scratch_folders_of_dead_runs_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f"{SCRATCH_PREFIX}{dead.stdout.strip()}-abc"
    mine = tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-def"
    stale.mkdir()
    mine.mkdir()
    assert remove_stale_scratch(tmp_path) == [stale]
    assert not stale.exists() and mine.exists()


def test_the_executor_removes_its_scratch_folder_when_the_run_ends(tmp_path: Path) -> None:
    cfg = RunConfig(**{**FAST, "isolation": "process", "models": ("dcgan",), "pipelines": ("fp32",)})
    writer = ResultWriter(tmp_path / "run")
    executor = ProcessExecutor(cfg, Device("cpu"), "r")
    scratch = executor.scratch
    cells = plan_cells([get_model("dcgan")], "tiny", [parse_pipeline("fp32")], (1,))
    Runner(cfg, Device("cpu"), writer, "r", executor=executor).run(cells)
    assert writer.frame()["status"].tolist() == ["ok"]
    assert not scratch.exists()


class _Planted:
    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (Path(os.environ["PLANTED_MARKER"]),))


def test_a_reference_file_cannot_run_code(tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "ran"
    monkeypatch.setenv("PLANTED_MARKER", str(marker))
    cell = Cell(0, get_model("dcgan"), "tiny", parse_pipeline("fp32"), 2)
    references = SharedReferences(Device("cpu"), 0, tmp_path)
    torch.save({"inputs": [_Planted()], "output": torch.ones(1)}, references.path(cell))
    with pytest.raises(Exception, match="[Ww]eights only"):
        references.get(cell)
    assert not marker.exists()


def test_nothing_outlives_the_run(tmp_path: Path) -> None:
    import psutil

    cfg = RunConfig(**{**FAST, "isolation": "process", "models": ("dcgan",), "pipelines": ("fp32",)})
    cells = plan_cells([get_model("dcgan")], "tiny", [parse_pipeline("fp32")], (1,))
    Runner(cfg, Device("cpu"), ResultWriter(tmp_path / "run"), "r").run(cells)

    def left() -> list[str]:
        # multiprocessing's resource tracker stays for the life of the calling process, by design
        found = [" ".join(c.cmdline()) for c in psutil.Process().children(recursive=True)]
        return [cmd for cmd in found if "resource_tracker" not in cmd]

    deadline = time.monotonic() + 10
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left() == []  # the worker server and every worker ended with the run


def test_the_runner_is_not_another_process_on_the_workers_gpu(tmp_path: Path) -> None:
    """A worker's parent is the fork server: the runner's pid travels in the job, for the GPU contention check."""
    from bench.harness.worker import job_for

    cell = Cell(0, get_model("dcgan"), "tiny", parse_pipeline("fp32"), 1)
    job = job_for(cell, RunConfig(), "cpu", "r", tmp_path, tmp_path / "log", None)
    assert job["runner_pid"] == os.getpid()


def test_a_reply_cut_off_mid_message_reads_as_a_dead_worker() -> None:
    """A worker killed while sending (the OOM killer) leaves half a message: that is a death, not the run's end."""

    class CutOff:
        def poll(self, timeout: float = 0) -> bool:
            return True

        def recv_bytes(self, maxlength: int | None = None) -> bytes:
            raise OSError("got end of file during message")

    class Alive:
        def is_alive(self) -> bool:
            return True

    assert ProcessExecutor._await(CutOff(), Alive(), time.monotonic() + 5) == b""  # type: ignore[arg-type]

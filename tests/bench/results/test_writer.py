"""The writer: one commit point per flush (manifest.json), refusing machines as one line, strict JSON."""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bench.core.errors import EnvironmentProblem, RunError
from bench.results import writer as writer_module
from bench.results.schema import SCHEMA_VERSION
from bench.results.store import TABLE_FILES, load_run
from bench.results.writer import DATA_FILES, MANIFEST, ResultWriter


def _row(cell_id: int, **extra: object) -> dict[str, object]:
    row: dict[str, object] = {
        "run_id": "r", "cell_id": cell_id, "model": "dcgan", "size": "tiny", "pipeline": "fp32",
        "batch_size": 4, "status": "ok", "latency_ms_p50": 1.5 + cell_id, "noisy": False,
        "psnr_db": math.inf, "fidelity_ok": True,
    }  # fmt: skip
    row.update(extra)
    return row


def _written(folder: Path, cells: int) -> ResultWriter:
    writer = ResultWriter(folder)
    writer.write_env({"run_id": "r", "hostname": "h"})
    for cell_id in range(cells):
        writer.add(_row(cell_id), [1.0 + cell_id, 2.0 + cell_id])
    return writer


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


class _Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs (it is not an Exception, so nothing catches it)."""


def _kill_when_writing(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The next atomic write of ``name`` dies before it starts, as if the process were killed there."""
    real = writer_module._atomic_write

    def atomic_write(path: Path, write: Any) -> tuple[int, str]:
        if path.name == name:
            raise _Killed
        return real(path, write)

    monkeypatch.setattr(writer_module, "_atomic_write", atomic_write)


# ------------------------------------------------------------------ the manifest
def test_each_flush_ends_with_a_manifest_naming_schema_rows_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    real = writer_module._atomic_write
    monkeypatch.setattr(writer_module, "_atomic_write", lambda p, w: (order.append(p.name), real(p, w))[1])
    _written(tmp_path, 2)
    assert order[-1] == MANIFEST and order[-5:-1] == list(DATA_FILES)  # written last, after the data
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert (manifest["cells"], manifest["samples"]) == (2, 4)
    assert manifest["files"]["cells.csv"]["rows"] == 2 and manifest["files"]["samples.csv"]["rows"] == 4
    assert manifest["files"]["cells.csv"]["bytes"] == (tmp_path / "cells.csv").stat().st_size


@pytest.mark.parametrize("killed_at", ["cells.parquet", "cells.json", "samples.csv", MANIFEST])
def test_a_flush_killed_before_its_manifest_leaves_the_previous_run_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed_at: str
) -> None:
    writer = _written(tmp_path, 2)
    committed = load_run(tmp_path)
    _kill_when_writing(monkeypatch, killed_at)
    with pytest.raises(_Killed):
        writer.add(_row(2), [9.0, 9.0, 9.0])
    assert len(pd.read_csv(tmp_path / "cells.csv")) == 3  # the unfinished flush did replace cells.csv
    run = load_run(tmp_path)
    assert list(run.cells["cell_id"]) == [0, 1]
    pd.testing.assert_frame_equal(run.cells, committed.cells)
    pd.testing.assert_frame_equal(run.samples, committed.samples)


def test_a_new_writer_removes_the_temp_files_a_killed_one_left(tmp_path: Path) -> None:
    _written(tmp_path, 1)
    stale = [tmp_path / ".cells.parquet.k3j2h1.tmp", tmp_path / ".manifest.json.abcdef.tmp"]
    for path in stale:
        path.write_bytes(b"half a parquet file")
    someone_elses = tmp_path / ".notes.tmp"
    someone_elses.write_text("mine")
    ResultWriter(tmp_path)
    assert not any(path.exists() for path in stale)
    assert someone_elses.read_text() == "mine"  # only the writer's own temp names are removed


def test_the_manifest_is_in_table_files_last_so_a_copy_commits_what_it_copied() -> None:
    assert TABLE_FILES[-1] == MANIFEST and set(DATA_FILES) <= set(TABLE_FILES)


# ------------------------------------------------------------------ refusing machines
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM])
def test_a_refused_write_is_one_line_and_keeps_the_previous_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    writer = _written(tmp_path, 2)
    before = _snapshot(tmp_path)

    def full_disk(self: pd.DataFrame, path: Path, *args: object, **kwargs: object) -> None:
        Path(path).write_bytes(b"PAR1 half")  # part of the file made it to disk
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full_disk)
    with pytest.raises(EnvironmentProblem) as caught:
        writer.add(_row(2), [3.0])
    message = str(caught.value)
    assert message == f"cannot write {tmp_path / 'cells.parquet'}: {os.strerror(code)}"
    assert "\n" not in message
    after = _snapshot(tmp_path)
    assert after.keys() == before.keys()  # no temp file left behind
    for name in ("cells.parquet", "cells.json", "samples.csv", MANIFEST, "env.json"):
        assert after[name] == before[name], name
    assert list(load_run(tmp_path).cells["cell_id"]) == [0, 1]  # what the manifest committed


def test_out_dir_under_a_regular_file_is_an_environment_problem(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(EnvironmentProblem, match=r"cannot write to .*afile/run: Not a directory"):
        ResultWriter(tmp_path / "afile" / "run")


def test_out_dir_that_is_a_file_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunError, match="afile is a file, not a folder"):
        ResultWriter(tmp_path / "afile")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_out_dir_under_proc_is_an_environment_problem() -> None:
    with pytest.raises(EnvironmentProblem, match="cannot write to /proc/genbench-results"):
        ResultWriter(Path("/proc/genbench-results/run"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o500 folder anyway")
def test_a_read_only_folder_is_refused_before_the_first_cell(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(EnvironmentProblem, match="Permission denied"):
            ResultWriter(folder)
    finally:
        folder.chmod(0o700)


# ------------------------------------------------------------------ env.json
def test_env_json_is_strict_json_even_with_non_finite_readings(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path)
    writer.write_env(
        {
            "peak": float("nan"),
            "gpus": [{"power_w": float("inf")}, {"power_w": np.float64("-inf")}],
            "cpu": {"ghz": np.float64("nan"), "cores": np.int64(2)},
        }
    )

    def refuse(constant: str) -> None:
        raise AssertionError(f"env.json holds bare {constant}")

    env = json.loads((tmp_path / "env.json").read_text(), parse_constant=refuse)
    assert env["peak"] is None
    assert env["gpus"] == [{"power_w": "inf"}, {"power_w": "-inf"}]
    assert env["cpu"] == {"ghz": None, "cores": 2}
    assert env["schema_version"] == SCHEMA_VERSION

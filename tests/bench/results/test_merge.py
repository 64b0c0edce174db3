"""merge: runs from several hosts become one tidy run folder that compare and report read."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.analysis.compare import compare_runs
from bench.cli import main
from bench.results.store import load_run
from tests.bench.analysis.test_compare import cell, lognormal, make_run


def _host_run(tmp_path: Path, host: str, device_name: str, scale: float = 1.0) -> Path:
    rows = [
        cell(0, run_id=f"run-{host}", host=host, device_name=device_name),
        cell(1, run_id=f"run-{host}", host=host, device_name=device_name, batch_size=4),
        cell(2, run_id=f"run-{host}", host=host, device_name=device_name, pipeline="fp16", status="skipped",
             reason="fp16: needs CUDA"),
    ]  # fmt: skip
    samples = {0: lognormal(20, 5.0 * scale, 0.02, 1), 1: lognormal(30, 9.0 * scale, 0.02, 2)}
    env = {
        "run_id": f"run-{host}",
        "hostname": host,
        "device": "cpu",
        "cpu": {"model": device_name, "torch_threads": 4},
    }
    return make_run(tmp_path / host, rows, samples, env)


def test_merge_two_hosts_renumbers_cells_and_remaps_samples(tmp_path: Path) -> None:
    a, b = _host_run(tmp_path, "host-a", "CPU A"), _host_run(tmp_path, "host-b", "CPU B", scale=0.5)
    out = tmp_path / "merged"
    assert main(["merge", str(a), str(b / "cells.csv"), "--out", str(out)]) == 0
    merged = load_run(out)
    assert merged.cells["cell_id"].tolist() == list(range(6))
    assert merged.cells["host"].tolist() == ["host-a"] * 3 + ["host-b"] * 3
    assert merged.cells["run_id"].nunique() == 2
    by_cell = merged.samples_by_cell()
    for offset, source in ((0, load_run(a)), (3, load_run(b))):
        for old, values in source.samples_by_cell().items():
            np.testing.assert_allclose(by_cell[old + offset], values)
    assert 2 not in by_cell and 5 not in by_cell  # skipped cells have no samples, before and after
    env = json.loads((out / "env.json").read_text())
    assert [r["hostname"] for r in env["runs"]] == ["host-a", "host-b"]
    assert env["hosts"] == ["host-a", "host-b"] and env["schema_version"] >= 1
    assert (out / "cells.parquet").is_file() and (out / "cells.json").is_file()


def test_compare_and_report_accept_a_merged_folder(tmp_path: Path) -> None:
    a, b = _host_run(tmp_path, "host-a", "CPU A"), _host_run(tmp_path, "host-b", "CPU B")
    out = tmp_path / "merged"
    assert main(["merge", str(a), str(b), "--out", str(out)]) == 0
    cmp = compare_runs(load_run(out), load_run(out))
    assert len(cmp.pairs) == 6  # host-a and host-b cells kept apart by their device
    assert set(cmp.pairs["verdict"]) == {"unchanged"}
    assert main(["compare", str(a), str(out)]) == 0  # host-b's cells listed as NEW-only
    md = tmp_path / "report.md"
    assert main(["report", str(out), "--markdown", str(md)]) == 0
    text = md.read_text()
    assert "CPU A image/s" in text and "CPU B image/s" in text
    assert "host-a" in text and "host-b" in text  # the environment of each source run


def test_merged_repeats_are_pooled_by_compare(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    r1 = _host_run(tmp_path / "one", "host-a", "CPU A")
    r2 = make_run(
        tmp_path / "two" / "host-a",
        [cell(0, run_id="again", host="host-a", device_name="CPU A")],
        {0: lognormal(20, 5.0, 0.02, 7)},
    )
    out = tmp_path / "merged"
    assert main(["merge", str(r1), str(r2), "--out", str(out)]) == 0
    cmp = compare_runs(load_run(out), load_run(r1))
    row = cmp.pairs.set_index(["pipeline", "batch_size"]).loc[("fp32", 1)]
    assert row["runs_base"] == 2 and row["runs_new"] == 1
    assert any("2 runs" in note for note in cmp.notes)  # the repeats are pooled across runs


def test_merging_a_merged_folder_lists_every_source(tmp_path: Path) -> None:
    a, b = _host_run(tmp_path, "host-a", "CPU A"), _host_run(tmp_path, "host-b", "CPU B")
    c = _host_run(tmp_path, "host-c", "CPU C")
    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "ab")]) == 0
    assert main(["merge", str(tmp_path / "ab"), str(c), "--out", str(tmp_path / "abc")]) == 0
    env = json.loads((tmp_path / "abc" / "env.json").read_text())
    assert [r["hostname"] for r in env["runs"]] == ["host-a", "host-b", "host-c"]
    assert load_run(tmp_path / "abc").cells["cell_id"].tolist() == list(range(9))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("same run twice", "is in both"),
        ("existing out", "already holds a run"),
        ("missing run", "does not exist"),
    ],
)
def test_merge_bad_input_is_one_line(
    case: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _host_run(tmp_path, "host-a", "CPU A"), _host_run(tmp_path, "host-b", "CPU B")
    argv = {
        "same run twice": ["merge", str(a), str(a / "cells.csv"), "--out", str(tmp_path / "m")],
        "existing out": ["merge", str(a), str(b), "--out", str(b)],
        "missing run": ["merge", str(a), str(tmp_path / "nope"), "--out", str(tmp_path / "m")],
    }[case]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("genbench: error: ") and err.count("\n") == 1 and message in err, err


def test_force_replaces_an_earlier_merge(tmp_path: Path) -> None:
    a, b = _host_run(tmp_path, "host-a", "CPU A"), _host_run(tmp_path, "host-b", "CPU B")
    out = tmp_path / "m"
    assert main(["merge", str(a), "--out", str(out)]) == 0
    assert main(["merge", str(a), str(b), "--out", str(out)]) == 2
    assert main(["merge", str(a), str(b), "--out", str(out), "--force"]) == 0
    assert len(load_run(out).cells) == 6


def _add_column(run: Path, table: str, name: str) -> None:
    frame = pd.read_csv(run / table)
    frame = pd.concat([frame, pd.DataFrame({name: [1.5] * len(frame)})], axis=1)
    frame.to_csv(run / table, index=False)
    (run / "manifest.json").unlink()  # the table was edited after it was written, as a user would


@pytest.mark.parametrize("table", ["cells.csv", "samples.csv"])
def test_merge_refuses_columns_it_does_not_know(
    table: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _host_run(tmp_path, "host-a", "CPU A"), _host_run(tmp_path, "host-b", "CPU B")
    _add_column(b, table, "my_watts")
    out = tmp_path / "m"
    assert main(["merge", str(a), str(b), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "my_watts" in err and str(b / table) in err, err
    assert not out.exists()  # refused before anything was written


def test_merge_out_at_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _host_run(tmp_path, "host-a", "CPU A")
    for target in (tmp_path / "notes.txt", a / "cells.csv"):
        if not target.exists():
            target.write_text("mine\n")
        before = target.read_bytes()
        assert main(["merge", str(a), "--out", str(target), "--force"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is a file, not a folder" in err, err
        assert target.read_bytes() == before


def test_merge_out_with_stray_run_files_needs_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _host_run(tmp_path, "host-a", "CPU A")
    out = tmp_path / "m"
    out.mkdir()
    (out / "env.json").write_text('{"run_id": "someone else"}')
    (out / "samples.csv").write_text("cell_id,iter,latency_ms\n")
    assert main(["merge", str(a), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "env.json, samples.csv (no cells.csv)" in err and "--force" in err, err
    assert (out / "env.json").read_text() == '{"run_id": "someone else"}'
    assert main(["merge", str(a), "--out", str(out), "--force"]) == 0
    assert len(load_run(out).cells) == 3


def test_merge_never_writes_beside_files_it_did_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _host_run(tmp_path, "host-a", "CPU A")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "README.md").write_text("my notes\n")
    for out in (tmp_path / "m", tmp_path):  # a folder of notes; the folder holding the runs
        assert main(["merge", str(a), "--out", str(out), "--force"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "holds files merge does not write" in err, err
        assert not (out / "cells.csv").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["merge", str(a), "--out", str(empty)]) == 0


def test_merge_into_an_unwritable_folder_is_an_environment_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bench.results.writer as writer

    a = _host_run(tmp_path, "host-a", "CPU A")
    out = tmp_path / "m"

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(writer.tempfile, "mkstemp", refuse)
    assert main(["merge", str(a), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Read-only file system" in err and str(out) in err, err


def test_merge_prints_how_the_sources_machines_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _host_run(tmp_path, "host-a", "CPU A"), _host_run(tmp_path, "host-b", "CPU B")
    capsys.readouterr()
    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "cpu_model: CPU A -> CPU B" in out
    assert out.index("cpu_model") < out.index("merged 2 runs")

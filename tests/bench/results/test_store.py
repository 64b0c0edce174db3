"""load_run and read_cells: trust the manifest, refuse cut-off rows and numbers no column can hold."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from bench.core.errors import RunError
from bench.results.store import load_run, read_cells, read_manifest
from bench.results.writer import MANIFEST, ResultWriter


def _row(cell_id: int, **extra: object) -> dict[str, object]:
    row: dict[str, object] = {
        "run_id": "r", "cell_id": cell_id, "model": "dcgan", "size": "tiny", "pipeline": "fp32",
        "batch_size": 4, "status": "ok", "latency_ms_p50": 12.345678 + cell_id, "noisy": False,
        "psnr_db": math.inf, "fidelity_ok": True, "notes": "stop=converged",
    }  # fmt: skip
    row.update(extra)
    return row


def _run(folder: Path, cells: int = 2, manifest: bool = True) -> Path:
    writer = ResultWriter(folder)
    writer.write_env({"run_id": "r"})
    for cell_id in range(cells):
        writer.add(_row(cell_id), [1.25 + cell_id, 2.5 + cell_id])
    if not manifest:
        (folder / MANIFEST).unlink(missing_ok=True)  # as an older genbench wrote it
    return folder


def _cut_last_row(path: Path, keep: float = 0.5) -> None:
    """Cut ``path`` partway through its last row, as a copy or a writer without renames would."""
    text = path.read_text()
    last_start = text.rstrip("\n").rfind("\n") + 1
    last = text[last_start:]
    path.write_text(text[:last_start] + last[: int(len(last) * keep)])


# ------------------------------------------------------------------ without a manifest: as before, but whole rows
def test_a_folder_without_a_manifest_reads_as_before(tmp_path: Path) -> None:
    with_manifest = load_run(_run(tmp_path / "a"))
    without = load_run(_run(tmp_path / "b", manifest=False))
    assert read_manifest(tmp_path / "b") is None
    pd.testing.assert_frame_equal(with_manifest.cells, without.cells)
    pd.testing.assert_frame_equal(with_manifest.samples, without.samples)


def test_cells_csv_cut_off_in_its_last_row_is_refused_without_a_manifest(tmp_path: Path) -> None:
    folder = _run(tmp_path, manifest=False)
    _cut_last_row(folder / "cells.csv")
    with pytest.raises(RunError, match=r"cells\.csv .*cut off") as caught:
        load_run(folder)
    assert str(folder / "cells.csv") in str(caught.value) and "\n" not in str(caught.value)


def test_samples_csv_cut_inside_its_last_number_is_refused_without_a_manifest(tmp_path: Path) -> None:
    folder = _run(tmp_path, manifest=False)
    text = (folder / "samples.csv").read_text()
    (folder / "samples.csv").write_text(text.rstrip("\n")[:-1])  # 3.5 -> 3.: every field there, one half
    with pytest.raises(RunError, match=r"samples\.csv is cut off"):
        load_run(folder)


def test_a_short_row_inside_cells_csv_is_refused(tmp_path: Path) -> None:
    folder = _run(tmp_path, manifest=False)
    lines = (folder / "cells.csv").read_text().splitlines(keepends=True)
    lines[1] = ",".join(lines[1].split(",")[:20]) + "\n"  # pandas would read the missing fields empty
    (folder / "cells.csv").write_text("".join(lines))
    with pytest.raises(RunError, match=r"cells\.csv line 2 has 20 fields where the header has"):
        load_run(folder)


# ------------------------------------------------------------------ with a manifest: what it commits
def test_a_cut_off_row_beyond_the_manifest_is_ignored(tmp_path: Path) -> None:
    folder = _run(tmp_path, cells=2)
    committed = load_run(folder)
    full = folder / "cells.csv"
    full.write_text(full.read_text() + ",".join(str(v) for v in _row(2).values())[:30])  # a later flush, cut
    with (folder / "samples.csv").open("a") as samples:
        samples.write("2,0,7.")
    run = load_run(folder)
    pd.testing.assert_frame_equal(run.cells, committed.cells)
    pd.testing.assert_frame_equal(run.samples, committed.samples)


def test_the_committed_prefix_of_a_longer_flush_is_byte_identical(tmp_path: Path) -> None:
    """What makes 'ignore rows beyond the manifest' work: a flush with one more row starts with
    exactly the bytes of the previous one (pandas formats every value on its own)."""
    first = _run(tmp_path / "one", cells=2)
    second = _run(tmp_path / "two", cells=3)
    for name in ("cells.csv", "samples.csv"):
        assert (second / name).read_bytes().startswith((first / name).read_bytes()), name


def test_a_table_edited_after_its_manifest_is_read_as_it_now_is(tmp_path: Path) -> None:
    folder = _run(tmp_path)
    frame = pd.read_csv(folder / "cells.csv", dtype=str, keep_default_na=False)
    frame.loc[0, "reason"] = "edited by hand"
    frame.to_csv(folder / "cells.csv", index=False)
    assert load_run(folder).cells.loc[0, "reason"] == "edited by hand"
    (folder / "samples.csv").write_text("cell_id,iter,latency_ms\n7,0,1.0\n")
    with pytest.raises(RunError, match="cell_id 7"):  # the hand edit is checked like any table
        load_run(folder)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not readable JSON"),
        ('{"schema_version": 4}', "not a genbench manifest"),
        ('{"schema_version": 99, "files": {}}', "schema version 99"),
        (
            '{"schema_version": 4, "files": {"cells.csv": {"rows": -1, "bytes": 3, "sha256": "x"}}}',
            "malformed",
        ),
    ],
)
def test_a_malformed_manifest_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    folder = _run(tmp_path)
    (folder / MANIFEST).write_text(text)
    with pytest.raises(RunError, match=message):
        load_run(folder)


# ------------------------------------------------------------------ numbers no column can hold
@pytest.mark.parametrize(
    "value", ["99999999999999999999999", "-99999999999999999999999", "18446744073709551615"]
)
def test_an_integer_beyond_64_bits_in_cells_csv_is_one_line(tmp_path: Path, value: str) -> None:
    folder = _run(tmp_path, manifest=False)
    frame = pd.read_csv(folder / "cells.csv", dtype=str, keep_default_na=False)
    frame.loc[1, "batch_size"] = value
    frame.to_csv(folder / "cells.csv", index=False)
    with pytest.raises(
        RunError, match=rf"cells\.csv column batch_size row 2: '{value}' is not a whole number"
    ):
        load_run(folder)
    with pytest.raises(RunError, match="column batch_size"):
        read_cells(folder)


def test_an_integer_beyond_64_bits_in_samples_csv_is_one_line(tmp_path: Path) -> None:
    folder = _run(tmp_path, manifest=False)
    (folder / "samples.csv").write_text("cell_id,iter,latency_ms\n0,99999999999999999999999,1.0\n")
    with pytest.raises(RunError, match=r"samples\.csv column iter row 1: '99999999999999999999999'"):
        load_run(folder)

"""Where `bench project` writes its table: a folder that refuses is one line (exit 1), never a traceback,
and a --csv that would overwrite one of the input run's own files is refused before anything runs (exit 2)."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cli import main

RUN = Path(__file__).resolve().parents[3] / "results" / "cpu-amd-epyc-2c-20261123"


@pytest.fixture
def run(tmp_path: Path, cached_cpu_peak: None) -> Path:
    """A copy of the committed run, and a cached peak for its CPU (no catalogue entry), so nothing is measured."""
    return Path(shutil.copytree(RUN, tmp_path / "run"))


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    yield folder
    folder.chmod(stat.S_IRWXU)


def _project(run: Path, *extra: str) -> int:
    return main(["project", "--from", str(run), "--targets", "l4", *extra])


def test_projection_writes_its_table(run: Path) -> None:
    assert _project(run) == 0
    assert (run / "projection.csv").is_file()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_csv_into_a_read_only_folder_is_one_line_and_exit_1(
    run: Path, read_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for csv in (read_only / "projection.csv", read_only / "sub" / "projection.csv"):
        assert _project(run, "--csv", str(csv)) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"genbench: error: cannot write the projection table {csv}: ")
        assert "Permission denied" in err and err.count("\n") == 1
    assert list(read_only.iterdir()) == []


@pytest.mark.parametrize("name", ["cells.csv", "cells.parquet", "cells.json", "samples.csv", "env.json"])
def test_csv_at_one_of_the_input_runs_files_is_refused(
    run: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (run / name).read_bytes()
    assert _project(run, "--csv", str(run / name)) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"genbench: error: --csv {run / name} is {name} of the run {run} that project reads"
    )
    assert err.count("\n") == 1
    assert (run / name).read_bytes() == before


def test_csv_at_the_input_reached_another_way_is_refused(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # --from given as the cells.csv itself, --csv as a relative path to the same file
    assert (
        main(["project", "--from", str(run / "cells.csv"), "--targets", "l4", "--csv", "run/cells.csv"]) == 2
    )
    assert "is cells.csv of the run" in capsys.readouterr().err
    # the --check run's files are inputs too; a manifest.json beside the cells as well
    other = Path(shutil.copytree(run, tmp_path / "other"))
    assert _project(run, "--check", str(other), "--csv", str(other / "samples.csv")) == 2
    assert f"is samples.csv of the run {other}" in capsys.readouterr().err
    assert _project(run, "--csv", str(run / "manifest.json")) == 2
    assert "is manifest.json of the run" in capsys.readouterr().err


def test_csv_naming_a_folder_is_refused(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _project(run, "--csv", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genbench: error: --csv {tmp_path} is a folder") and err.count("\n") == 1


def test_a_write_the_disk_refuses_is_one_line_and_exit_1(
    run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same path as a read-only folder, reachable as root: the OSError of the write itself."""
    import errno

    import pandas as pd

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    assert _project(run) == 1
    err = capsys.readouterr().err
    assert (
        err
        == f"genbench: error: cannot write the projection table {run / 'projection.csv'}: No space left on device\n"
    )

"""`run`'s own folder: unique ids, an atomic claim, and a clear line for every folder it cannot use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli.run import claim_run_folder, new_run_id
from bench.core.errors import EnvironmentProblem, UsageError
from bench.results.store import load_run

ROOT = Path(__file__).resolve().parents[3]


def test_run_ids_started_in_the_same_second_differ() -> None:
    ids = {new_run_id("cpu") for _ in range(50)}
    assert len(ids) == 50
    assert all(i.split("-")[2] == "cpu" for i in ids)


def test_a_folder_is_claimed_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    claim_run_folder(out)
    assert (out / "env.json").is_file()
    with pytest.raises(UsageError, match="not empty"):
        claim_run_folder(out)


@pytest.mark.parametrize("stray", ["samples.csv", "env.json", "notes.txt"])
def test_a_folder_with_stray_files_is_refused_and_left_alone(tmp_path: Path, stray: str) -> None:
    (tmp_path / stray).write_text("mine")
    with pytest.raises(UsageError, match=stray):
        claim_run_folder(tmp_path)
    assert (tmp_path / stray).read_text() == "mine"


def test_folders_that_cannot_be_used_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        claim_run_folder(tmp_path / "afile")
    with pytest.raises(UsageError, match="under a file"):
        claim_run_folder(tmp_path / "afile" / "run")
    with pytest.raises(EnvironmentProblem, match="cannot create --out /proc/genbench"):
        claim_run_folder(Path("/proc/genbench/run"))
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(EnvironmentProblem, match="Permission denied"):
            claim_run_folder(locked / "run")


def test_two_runs_started_together_keep_their_own_rows(tmp_path: Path) -> None:
    """Both in the default folder, started in the same second: two folders, each with its own model."""
    args = ["--size", "tiny", "--pipelines", "fp32", "--batch-sizes", "1", "--time-budget", "0.1",
            "--min-samples", "3", "--isolation", "none"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench", "run", "--models", model, *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for model in ("dcgan", "vae")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
    folders = sorted((tmp_path / "results").iterdir())
    assert len(folders) == 2
    models = set()
    for folder in folders:
        run = load_run(folder)
        assert run.cells["model"].nunique() == 1
        model = run.cells["model"].iloc[0]
        assert json.loads((folder / "env.json").read_text())["config"]["models"] == [model]
        models.add(model)
    assert models == {"dcgan", "vae"}

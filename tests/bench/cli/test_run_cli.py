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


# ------------------------------------------------------------------ --ray (the cluster runs: tests/bench/harness/test_ray.py)
RAY_ARGS = ["run", "--models", "dcgan", "--size", "tiny", "--pipelines", "fp32", "--batch-sizes", "1"]


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_ray_without_ray_installed_is_one_line_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as where it is absent
    assert main([*RAY_ARGS, "--ray", "local", "--out", str(tmp_path / "run")]) == 2
    err = _one_error(capsys)
    assert "pip install 'genbench[ray]'" in err and "ray extra" in err
    assert not (tmp_path / "run").exists()  # refused before any folder was made


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--devices", "cpu,cuda"], "--devices places cells on a Ray cluster: add --ray"),
        (["--ray-resource", "gpu_box@cuda"], "--ray-resource places cells on a Ray cluster"),
        (["--ray", "local", "--isolation", "none"], "drop --isolation none"),
        (["--ray", "local", "--device", "cuda:1"], "under --ray name device classes with --devices"),
        (["--ray", "local", "--devices", "cuda:1"], "Ray assigns each cell its GPU"),
        (["--ray", "local", "--node-label", "nolabel"], "--node-label takes KEY=VALUE[@CLASS]"),
        (["--ray", "local", "--ray-resource", "x=0"], "the amount must be a positive number"),
        (["--ray", "local", "--ray-retries", "-1"], "--ray-retries must be from 0"),
        (["--ray", "local", "--scenario", "offline"], "run it without --ray"),
    ],
)
def test_ray_flags_that_cannot_mean_anything_are_one_line(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.cli import main

    assert main([*RAY_ARGS, *flags]) == 2
    assert message in _one_error(capsys)

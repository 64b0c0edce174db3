"""baseline: save a run as its machine class's reference, check later runs against it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from bench.core.errors import RunError
from bench.results.baseline import machine_class
from tests.bench.analysis.test_compare import recorded_run

CLASS = "cpu-amd-epyc-1t"  # what recorded_run's env.json describes


def test_machine_class_names_cpu_model_and_threads_or_the_gpu() -> None:
    cpu = {"device": "cpu", "cpu": {"model": "AMD EPYC 7763 64-Core Processor", "torch_threads": 4}}
    assert machine_class(cpu) == "cpu-amd-epyc-7763-64-core-processor-4t"
    gpus = [{"index": 0, "name": "NVIDIA A10G"}, {"index": 1, "name": "NVIDIA H100 80GB HBM3"}]
    assert machine_class({"device": "cuda:1", "gpus": gpus}) == "cuda-nvidia-h100-80gb-hbm3"
    assert machine_class({"device": "cuda", "gpus": gpus}) == "cuda-nvidia-a10g"
    assert machine_class({"runs": [cpu, cpu]}) == "cpu-amd-epyc-7763-64-core-processor-4t"  # repeats
    with pytest.raises(RunError, match="spans machine classes"):
        machine_class({"runs": [cpu, {"device": "cuda", "gpus": gpus}]})
    with pytest.raises(RunError, match="no env.json"):
        machine_class({})


def test_save_then_check_same_code_passes_and_2x_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "baselines"
    run = recorded_run(tmp_path / "nightly", "dcgan_tiny_fp32_base")
    assert main(["baseline", "save", str(run), "--root", str(root)]) == 0
    saved = root / CLASS
    assert {p.name for p in saved.iterdir()} == {
        "cells.csv",
        "cells.parquet",
        "cells.json",
        "samples.csv",
        "env.json",
    }

    same = recorded_run(tmp_path / "same", "dcgan_tiny_fp32_new")
    md = tmp_path / "summary.md"
    argv = [
        "baseline",
        "check",
        str(same),
        "--root",
        str(root),
        "--markdown",
        str(md),
        "--fail-on-regression",
    ]
    assert main(argv) == 0
    assert "no regression" in md.read_text() and "threshold 25%" in md.read_text()

    slow = recorded_run(tmp_path / "slow", "dcgan_tiny_fp32_new", scale=2.0)
    argv = [
        "baseline",
        "check",
        str(slow),
        "--root",
        str(root),
        "--markdown",
        str(md),
        "--fail-on-regression",
    ]
    assert main(argv) == 1
    assert md.read_text().startswith("### genbench compare: REGRESSION")

    capsys.readouterr()
    assert main(["baseline", "list", "--root", str(root)]) == 0
    assert CLASS in capsys.readouterr().out


def test_save_refuses_to_replace_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "baselines"
    run = recorded_run(tmp_path / "nightly", "dcgan_tiny_fp32_base")
    assert main(["baseline", "save", str(run), "--root", str(root), "--name", "ci-box"]) == 0
    assert main(["baseline", "save", str(run), "--root", str(root), "--name", "ci-box"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main(["baseline", "save", str(run), "--root", str(root), "--name", "ci-box", "--force"]) == 0


def test_check_without_a_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = recorded_run(tmp_path / "nightly", "dcgan_tiny_fp32_base")
    root, md = tmp_path / "empty", tmp_path / "summary.md"
    capsys.readouterr()
    assert main(["baseline", "check", str(run), "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no baseline '{CLASS}'" in err and "baseline save" in err
    assert (
        main(["baseline", "check", str(run), "--root", str(root), "--missing-ok", "--markdown", str(md)]) == 0
    )
    assert "no baseline" in md.read_text()


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", ""])
def test_bad_baseline_name_is_one_line(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = recorded_run(tmp_path / "nightly", "dcgan_tiny_fp32_base")
    assert main(["baseline", "save", str(run), "--root", str(tmp_path / "b"), "--name", name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "baseline name" in err
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())

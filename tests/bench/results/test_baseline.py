"""baseline: save a run as its machine class's reference, check later runs against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from bench.core.errors import RunError
from bench.results.baseline import find_baseline, machine_class
from bench.results.store import TABLE_FILES, load_run
from tests.bench.analysis.test_compare import recorded_run

CLASS = "cpu-amd-epyc-1t"  # what recorded_run's env.json describes (no ISA recorded)
RESULTS = Path(__file__).resolve().parents[3] / "results"


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


def _cpu_env(capability: str | None = None, isa: list[str] | None = None) -> dict[str, Any]:
    env: dict[str, Any] = {"device": "cpu", "cpu": {"model": "AMD EPYC", "torch_threads": 1}}
    if capability is not None:
        env["cpu"]["torch_cpu_capability"] = capability
    if isa is not None:
        env["fingerprint"] = {"hardware": {"cpu_model": "AMD EPYC", "isa": isa}, "software": {}, "hw_id": "x"}
    return env


AVX2 = ["avx", "avx2", "fma", "f16c"]
AVX512 = [*AVX2, "avx512f", "avx512bw", "avx512vl"]


@pytest.mark.parametrize(
    ("capability", "isa", "expected"),
    [
        ("AVX2", None, "cpu-amd-epyc-avx2-1t"),  # an env.json from before fingerprints
        ("AVX512", None, "cpu-amd-epyc-avx512-1t"),
        ("DEFAULT", None, "cpu-amd-epyc-1t"),
        ("AVX512", AVX2, "cpu-amd-epyc-avx2-1t"),  # the fingerprint's flags win over torch's level
        ("AVX512", [*AVX2, "avx_vnni"], "cpu-amd-epyc-avx2-vnni-1t"),
        ("AVX512", AVX512, "cpu-amd-epyc-avx512-1t"),
        ("AVX512", [*AVX512, "avx512_vnni", "avx512_bf16", "avx_vnni"], "cpu-amd-epyc-avx512-vnni-bf16-1t"),
        (
            "AVX512",
            [*AVX512, "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16"],
            "cpu-amd-epyc-avx512-vnni-bf16-fp16-amx-1t",
        ),
        (None, ["asimd", "asimddp", "bf16", "i8mm", "sve", "sve2"], "cpu-amd-epyc-sve2-bf16-i8mm-1t"),
        (None, ["asimd"], "cpu-amd-epyc-neon-1t"),
        (None, [], "cpu-amd-epyc-1t"),
    ],
)
def test_machine_class_includes_the_isa_level(
    capability: str | None, isa: list[str] | None, expected: str
) -> None:
    assert machine_class(_cpu_env(capability, isa)) == expected


def test_committed_avx2_and_avx512_runs_are_different_machine_classes() -> None:
    classes = [
        machine_class(json.loads((RESULTS / name / "env.json").read_text()))
        for name in (
            "cpu-amd-epyc-2c-20261123",
            "cpu-amd-epyc-avx512-2c-20261202",
            "baselines/cpu-amd-epyc-avx2-1t",
        )
    ]
    assert classes == ["cpu-amd-epyc-avx2-2t", "cpu-amd-epyc-avx512-vnni-bf16-2t", "cpu-amd-epyc-avx2-1t"]


def test_an_avx2_baseline_is_not_found_for_an_avx512_run(tmp_path: Path) -> None:
    root = tmp_path / "baselines"
    avx2 = recorded_run(tmp_path / "avx2", "dcgan_tiny_fp32_base")
    env = json.loads((avx2 / "env.json").read_text())
    env["cpu"]["torch_cpu_capability"] = "AVX2"
    (avx2 / "env.json").write_text(json.dumps(env))
    assert main(["baseline", "save", str(avx2), "--root", str(root)]) == 0
    assert (root / "cpu-amd-epyc-avx2-1t" / "cells.csv").is_file()
    env["cpu"]["torch_cpu_capability"] = "AVX512"
    avx512 = recorded_run(tmp_path / "avx512", "dcgan_tiny_fp32_new")
    (avx512 / "env.json").write_text(json.dumps(env))
    assert find_baseline(load_run(avx512), root=root) == ("cpu-amd-epyc-avx512-1t", None)
    assert find_baseline(load_run(avx2), root=root)[1] == root / "cpu-amd-epyc-avx2-1t"


def test_save_then_check_same_code_passes_and_2x_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "baselines"
    run = recorded_run(tmp_path / "nightly", "dcgan_tiny_fp32_base")
    assert main(["baseline", "save", str(run), "--root", str(root)]) == 0
    saved = root / CLASS
    assert {p.name for p in saved.iterdir()} == set(TABLE_FILES)  # every table the run has, copied

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
        "--threshold",
        "5%",  # as the nightly checks (noxfile): 25% on top of the drift allowance would pass a 2x
    ]
    assert main(argv) == 0
    assert "no regression" in md.read_text() and "threshold 5%" in md.read_text()

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
        "--threshold",
        "5%",
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


# ------------------------------------------------------------------ contended runs are not baselines
def _run_with_contention(folder: Path, contended: list[bool | None]) -> Path:
    from tests.bench.analysis.test_compare import cell, lognormal, make_run

    rows = [
        cell(
            i,
            batch_size=i + 1,
            contended=flag,
            host_busy_pct=None if flag is None else (48.0 if flag else 1.0),
        )
        for i, flag in enumerate(contended)
    ]
    return make_run(folder, rows, {i: lognormal(30, 1.0, 0.02, i) for i in range(len(rows))})


def test_save_refuses_a_contended_run_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.results.baseline import save_baseline

    root = tmp_path / "baselines"
    run = _run_with_contention(tmp_path / "busy", [False, True, False])
    capsys.readouterr()
    assert main(["baseline", "save", str(run), "--root", str(root), "--name", "ci-box"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 of 3 cells were contended" in err, err
    assert "re-run on a quiet machine or pass --force" in err
    assert not (root / "ci-box").exists()  # refused before anything was copied
    assert main(["baseline", "save", str(run), "--root", str(root), "--name", "ci-box", "--force"]) == 0
    assert (root / "ci-box" / "cells.csv").is_file()
    dest = save_baseline(run, root=root, name="other", allow_contended=True)
    assert (dest / "cells.csv").is_file()


def test_save_accepts_quiet_runs_and_runs_that_did_not_measure_contention(tmp_path: Path) -> None:
    from bench.results.baseline import contended_cells, save_baseline

    quiet = _run_with_contention(tmp_path / "quiet", [False, False])
    older = _run_with_contention(tmp_path / "older", [None, None])  # before the meter: empty, unknown
    assert contended_cells(load_run(quiet)) == 0 and contended_cells(load_run(older)) == 0
    for run in (quiet, older):
        assert (save_baseline(run, root=tmp_path / "b", name=run.name) / "cells.csv").is_file()

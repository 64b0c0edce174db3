"""compare, report, merge and baseline check: machine differences before the table, and outputs that never destroy an input."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from bench.cli import main
from tests.bench.analysis.test_compare import recorded_run


def run_on(
    folder: Path, name: str, capability: str = "AVX2", scale: float = 1.0, torch: str = "2.13.0"
) -> Path:
    """A recorded run whose env.json says which CPU vector level (and torch) it ran with."""
    run = recorded_run(folder, name, scale=scale)
    env = json.loads((run / "env.json").read_text())
    env["cpu"].update(torch_cpu_capability=capability, logical_cores=2, model="AMD EPYC")
    env["packages"] = {"torch": torch}
    (run / "env.json").write_text(json.dumps(env))
    return run


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("genbench: error: ") and err.count("\n") == 1, err
    return err


# ------------------------------------------------------------------ machine differences
def test_compare_across_hardware_is_labelled_and_does_not_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = run_on(tmp_path / "avx2", "dcgan_tiny_fp32_base", "AVX2")
    slow = run_on(tmp_path / "avx512", "dcgan_tiny_fp32_new", "AVX512", scale=2.0)
    md = tmp_path / "summary.md"
    capsys.readouterr()
    assert main(["compare", str(base), str(slow), "--markdown", str(md), "--fail-on-regression"]) == 0
    out = capsys.readouterr().out
    assert "cpu vector level (torch): AVX2 -> AVX512" in out and "different hardware" in out
    assert out.index("cpu vector level") < out.index("different hardware") < out.index("latency ratio")
    assert "not failing" in out and "--allow-different-hardware" in out
    text = md.read_text()
    assert "**different hardware" in text and "machine: cpu vector level (torch): AVX2 -> AVX512" in text
    argv = ["compare", str(base), str(slow), "--fail-on-regression", "--allow-different-hardware"]
    assert main(argv) == 1
    assert "failing (--fail-on-regression)" in capsys.readouterr().out


def test_compare_on_the_same_hardware_says_software_and_still_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = run_on(tmp_path / "a", "dcgan_tiny_fp32_base", torch="2.13.0")
    slow = run_on(tmp_path / "b", "dcgan_tiny_fp32_new", scale=2.0, torch="2.14.1")
    capsys.readouterr()
    assert main(["compare", str(base), str(slow), "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "torch: 2.13.0 -> 2.14.1" in out and "different hardware" not in out
    assert out.index("torch: 2.13.0") < out.index("latency ratio")
    assert main(["compare", str(base), str(base)]) == 0
    assert "machine differences" not in capsys.readouterr().out  # nothing differs: nothing said


def test_compare_with_a_side_without_env_json_says_so_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = run_on(tmp_path / "a", "dcgan_tiny_fp32_base")
    slow = run_on(tmp_path / "b", "dcgan_tiny_fp32_new", "AVX512", scale=2.0)
    (base / "env.json").unlink()
    capsys.readouterr()
    assert main(["compare", str(base), str(slow), "--fail-on-regression"]) == 1  # unknown is not different
    out = capsys.readouterr().out
    assert out.count("BASE has no env.json: its hardware is unknown") == 1 and "different hardware" not in out


def test_baseline_check_against_other_hardware_does_not_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "baselines"
    base = run_on(tmp_path / "avx2", "dcgan_tiny_fp32_base", "AVX2")
    assert main(["baseline", "save", str(base), "--root", str(root), "--name", "ci"]) == 0
    slow = run_on(tmp_path / "avx512", "dcgan_tiny_fp32_new", "AVX512", scale=2.0)
    argv = ["baseline", "check", str(slow), "--root", str(root), "--name", "ci", "--fail-on-regression"]
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "AVX2 -> AVX512" in out and "not failing" in out
    assert main([*argv, "--allow-different-hardware"]) == 1


def test_report_and_merge_of_several_runs_print_their_differences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = run_on(tmp_path / "a", "dcgan_tiny_fp32_base", "AVX2")
    b = run_on(tmp_path / "b", "dcgan_tiny_fp32_new", "AVX512")
    capsys.readouterr()
    assert main(["report", str(a), str(b), "--markdown", str(tmp_path / "r.md")]) == 0
    out = capsys.readouterr().out
    assert "AVX2 -> AVX512" in out and out.index("AVX2 -> AVX512") < out.index("wrote ")


# ------------------------------------------------------------------ outputs never destroy inputs
@pytest.mark.parametrize(
    ("flag", "target"),
    [
        ("--markdown", "cells.csv"),
        ("--csv", "samples.csv"),
        ("--markdown", "env.json"),
        ("--csv", "cells.parquet"),
        ("--markdown", "manifest.json"),
    ],
)
def test_compare_refuses_to_write_over_an_input_run(
    flag: str, target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = run_on(tmp_path / "a", "dcgan_tiny_fp32_base")
    new = run_on(tmp_path / "b", "dcgan_tiny_fp32_new")
    for side in (base, new):
        path = side / target
        before = path.read_bytes() if path.exists() else None
        assert main(["compare", str(base), str(new), flag, str(side / "." / target)]) == 2
        assert (
            str(side) in one_error_line(capsys) and (path.read_bytes() if path.exists() else None) == before
        )


def test_report_refuses_to_write_over_an_input_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_on(tmp_path / "a", "dcgan_tiny_fp32_base")
    before = (run / "cells.csv").read_bytes()
    assert main(["report", str(run), "--markdown", str(run / "cells.csv")]) == 2
    assert "cells.csv" in one_error_line(capsys) and (run / "cells.csv").read_bytes() == before
    assert main(["report", str(run / "cells.csv"), "--markdown", str(run / "cells.json")]) == 2
    assert "would destroy that run" in one_error_line(capsys)
    assert main(["report", str(run), "--markdown", str(run / "report.md")]) == 0  # beside the run is fine


def test_two_outputs_naming_one_file_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = run_on(tmp_path / "a", "dcgan_tiny_fp32_base")
    out = tmp_path / "out.txt"
    assert main(["compare", str(base), str(base), "--markdown", str(out), "--csv", str(out)]) == 2
    assert "--markdown and --csv both name" in one_error_line(capsys)


def test_baseline_check_refuses_to_write_over_its_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_on(tmp_path / "a", "dcgan_tiny_fp32_base")
    argv = ["baseline", "check", str(run), "--root", str(tmp_path / "none"), "--missing-ok"]
    assert main([*argv, "--markdown", str(run / "env.json")]) == 2
    assert "env.json" in one_error_line(capsys)
    assert json.loads((run / "env.json").read_text())["cpu"]["torch_cpu_capability"] == "AVX2"


def test_an_output_the_machine_refuses_is_an_environment_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = run_on(tmp_path / "a", "dcgan_tiny_fp32_base")
    target = tmp_path / "ro" / "summary.md"
    target.parent.mkdir()
    real = Path.write_text

    def read_only(self: Path, *args: object, **kwargs: object) -> int:
        if self == target:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", read_only)
    assert main(["compare", str(base), str(base), "--markdown", str(target)]) == 1
    err = one_error_line(capsys)
    assert "Read-only file system" in err and str(target) in err
    assert main(["report", str(base), "--markdown", str(target)]) == 1
    assert "Read-only file system" in one_error_line(capsys)


def test_an_output_path_the_user_got_wrong_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = run_on(tmp_path / "a", "dcgan_tiny_fp32_base")
    for target in (tmp_path / "missing" / "summary.md", tmp_path):
        assert main(["compare", str(base), str(base), "--markdown", str(target)]) == 2
        assert str(target) in one_error_line(capsys)

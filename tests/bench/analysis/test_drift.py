"""compare on real runs of the same code: run-to-run drift, repeats, contention, hardware.

The runs are in data/drift/ (data/drift/README.md says how each was made); the
drift allowance they are judged with is measured in bench.analysis.verdict.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bench.analysis.compare import Settings, bootstrap_ratio, compare_runs, drift_allowance
from bench.analysis.verdict import SINGLE_RUN_DRIFT, VERDICTS
from bench.cli import main
from bench.results.store import Run, load_run
from tests.bench.analysis.test_compare import cell, lognormal, make_run

DRIFT = Path(__file__).parent / "data" / "drift"


def run(name: str) -> Run:
    return load_run(DRIFT / name)


def _quiet(pairs: pd.DataFrame) -> pd.DataFrame:
    return pairs[~(pairs["contended_base"] | pairs["contended_new"])]


# ------------------------------------------------------------------ the allowance
def test_drift_allowance_shrinks_with_repeats_as_a_mean_of_runs() -> None:
    assert drift_allowance(1, 1) == pytest.approx(SINGLE_RUN_DRIFT)
    assert drift_allowance(3, 3) == pytest.approx(2.25 ** math.sqrt(1 / 3) - 1)  # x1.60
    assert drift_allowance(1, 3) == pytest.approx(2.25 ** math.sqrt(2 / 3) - 1)
    assert drift_allowance(1, 3) == pytest.approx(drift_allowance(3, 1))
    shrinking = [drift_allowance(k, k) for k in (1, 2, 3, 5, 10)]
    assert shrinking == sorted(shrinking, reverse=True) and shrinking[-1] > 0
    assert drift_allowance(0, 3) == 0.0  # no samples on a side: no interval to widen


# ------------------------------------------------------------------ single runs of the same code
def test_two_identical_single_runs_have_no_regression_at_default_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cmp = compare_runs(run("a"), run("b"))
    counts = cmp.counts()
    assert counts["regressed"] == 0 and counts["improved"] == 0, cmp.pairs[["model", "pipeline", "why"]]
    assert np.allclose(cmp.pairs["drift_allowance"], SINGLE_RUN_DRIFT)
    assert any("run-to-run drift" in note and "x2.25" in note for note in cmp.notes)
    capsys.readouterr()
    assert main(["compare", str(DRIFT / "a"), str(DRIFT / "b"), "--fail-on-regression"]) == 0
    assert "0 regressed" in capsys.readouterr().out


def test_the_within_run_interval_alone_reads_that_drift_as_changes() -> None:
    """The tester's finding, on these two runs: without the allowance, drift is called a change."""
    pairs = _quiet(compare_runs(run("a"), run("b"), Settings(drift_allowance=False)).pairs)
    assert (pairs["verdict"] == "regressed").sum() >= 2
    assert (pairs["verdict"] == "improved").sum() >= 2
    assert pairs["latency_ratio"].max() > 1.5  # the same code, 1.7x slower in one run


def test_a_2x_slowdown_between_single_runs_is_never_unchanged() -> None:
    """unet x2 (data/drift/slowed) is beyond 5% everywhere, but within the x2.25 drift in most cells."""
    pairs = compare_runs(run("a"), run("slowed")).pairs
    unet, others = pairs[pairs["model"] == "unet"], _quiet(pairs[pairs["model"] != "unet"])
    assert len(unet) == 6 and (unet["latency_ratio_lo"] > 1.5).all()
    assert set(unet["verdict"]) <= {"regressed", "noisy"}, unet["verdict"].tolist()
    assert (unet["verdict"] == "regressed").any()
    noisy = unet[unet["verdict"] == "noisy"]
    assert noisy["why"].str.contains("but not beyond it and the x2.25 run-to-run drift of single runs").all()
    assert not (others["verdict"] == "regressed").any()
    without = compare_runs(run("a"), run("slowed"), Settings(drift_allowance=False)).pairs
    assert (without.loc[without["model"] == "unet", "verdict"] == "regressed").all()


# ------------------------------------------------------------------ repeats
def test_identical_pools_of_three_repeats_have_no_regression() -> None:
    """The nightly's settings (one thread, a worker per cell), 3 runs a side merged."""
    cmp = compare_runs(run("pooled_a"), run("pooled_b"))
    assert (cmp.pairs["runs_base"] == 3).all() and (cmp.pairs["runs_new"] == 3).all()
    assert not cmp.regressed and cmp.counts()["improved"] == 0
    assert np.allclose(cmp.pairs["drift_allowance"], 2.25 ** math.sqrt(1 / 3) - 1)
    assert any("3 repeats of a cell from 3 runs" in note for note in cmp.notes)


def _first_repeat(r: Run, pair: pd.Series) -> np.ndarray:
    """The samples of the first repeat of ``pair``'s cell in run ``r``."""
    cells = r.cells
    rows = cells[
        (cells["model"] == pair["model"])
        & (cells["pipeline"] == pair["pipeline"])
        & (cells["batch_size"] == pair["batch_size"])
    ]
    return r.samples_by_cell()[int(rows["cell_id"].iloc[0])]


def test_between_repeat_spread_sets_the_interval_on_real_repeats() -> None:
    """Each pooled interval is wider than the one a single repeat of each side gives."""
    base, new = run("pooled_a"), run("pooled_b")
    pairs = compare_runs(base, new).pairs
    wider = 0
    for _, pair in pairs.iterrows():
        one = bootstrap_ratio(_first_repeat(base, pair), _first_repeat(new, pair))
        wider += (pair["latency_ratio_hi"] / pair["latency_ratio_lo"]) > (one.hi / one.lo)
    assert wider == len(pairs), f"{wider} of {len(pairs)}"


def _repeated(folder: Path, medians: list[float], seed: int) -> Path:
    rows = [cell(i, run_id=f"r{i}") for i in range(len(medians))]
    return make_run(folder, rows, {i: lognormal(60, m, 0.02, seed + i) for i, m in enumerate(medians)})


def test_between_repeat_spread_sets_the_interval(tmp_path: Path) -> None:
    """Same samples within each repeat; only how far the repeats' medians disagree differs."""
    base = load_run(_repeated(tmp_path / "base", [10.0, 10.0, 10.0], seed=0))
    agreeing = load_run(_repeated(tmp_path / "agree", [20.0, 20.0, 20.0], seed=10))
    spread = load_run(_repeated(tmp_path / "spread", [14.0, 20.0, 28.0], seed=10))
    tight = compare_runs(base, agreeing).pairs.iloc[0]
    wide = compare_runs(base, spread).pairs.iloc[0]
    assert tight["latency_ratio_hi"] / tight["latency_ratio_lo"] < 1.05
    assert wide["latency_ratio_hi"] / wide["latency_ratio_lo"] > 1.5
    assert tight["verdict"] == "regressed"  # 2x clears 1.05 x 1.60 when the repeats agree
    assert wide["verdict"] == "noisy"  # the same 2x median, but the repeats say it could be 1.4x


# ------------------------------------------------------------------ contention
def test_contended_cells_get_the_contended_verdict_with_who_and_how_busy() -> None:
    busy = run("busy")
    cmp = compare_runs(run("quiet"), busy)  # the same settings: in-process, 2 threads
    pairs = cmp.pairs
    hit = pairs["contended_base"] | pairs["contended_new"]
    assert hit.sum() >= 6
    assert (pairs.loc[hit, "verdict"] == "contended").all()
    assert not (pairs.loc[~hit, "verdict"] == "contended").any()
    new_only = pairs[pairs["contended_new"] & ~pairs["contended_base"]].iloc[0]
    source = busy.cells[
        (busy.cells["model"] == new_only["model"])
        & (busy.cells["pipeline"] == new_only["pipeline"])
        & (busy.cells["batch_size"] == new_only["batch_size"])
    ].iloc[0]
    assert new_only["why"].startswith(
        f"NEW was contended (others used {source['host_busy_pct']:.0f}% of the cell's cores)"
    ), new_only["why"]
    assert f"{int(hit.sum())} contended" in cmp.summary_line()
    assert any("NEW shared the machine" in note for note in cmp.notes)
    stolen = compare_runs(run("a"), run("b")).pairs  # a's dcgan bf16 b1: no neighbour, but the hypervisor
    assert (
        stolen["why"]
        .str.contains(r"BASE was contended \(others used 0% of the cell's cores, hypervisor steal 12%\)")
        .any()
    )


def test_different_run_settings_are_noted() -> None:
    notes = compare_runs(run("a"), run("busy")).notes  # a worker per cell vs in-process
    assert any("isolation process and NEW with none" in note for note in notes), notes
    assert not any("isolation" in note for note in compare_runs(run("a"), run("b")).notes)


def _one_cell(folder: Path, scale: float, **extra: Any) -> Path:
    return make_run(folder, [cell(0, **extra)], {0: lognormal(100, 10.0 * scale, 0.02, int(scale * 10))})


@pytest.mark.parametrize(
    ("new_extra", "expected"),
    [
        ({"contended": True, "host_busy_pct": 80.0}, "contended"),  # 3x slower, but not ours to judge
        ({"contended": None}, "regressed"),  # an older run: not measured, judged
        ({"contended": False, "host_busy_pct": 2.0}, "regressed"),
        (
            {"contended": True, "host_busy_pct": 80.0, "psnr_db": 20.0},
            "regressed",
        ),  # quality, whatever the load
    ],
)
def test_contention_blocks_only_the_speed_verdict(
    tmp_path: Path, new_extra: dict[str, Any], expected: str
) -> None:
    base = load_run(_one_cell(tmp_path / "base", 1.0))
    new = load_run(_one_cell(tmp_path / "new", 3.0, **new_extra))
    row = compare_runs(base, new).pairs.iloc[0]
    assert row["verdict"] == expected, row["why"]
    if expected == "contended":
        assert row["why"].startswith("NEW was contended (others used 80% of the cell's cores)")
        assert row["latency_ratio"] == pytest.approx(3.0, rel=0.05)  # still measured and shown


def test_a_cell_that_broke_is_regressed_even_when_contended(tmp_path: Path) -> None:
    base = load_run(_one_cell(tmp_path / "base", 1.0))
    new = load_run(_one_cell(tmp_path / "new", 1.0, status="error", reason="boom", contended=True))
    row = compare_runs(base, new).pairs.iloc[0]
    assert row["verdict"] == "regressed" and "ok -> error" in row["why"]


def test_one_contended_repeat_makes_the_pair_contended(tmp_path: Path) -> None:
    base = load_run(_repeated(tmp_path / "base", [10.0, 10.0, 10.0], seed=0))
    rows = [
        cell(i, run_id=f"r{i}", contended=i == 1, host_busy_pct=40.0 if i == 1 else 0.0) for i in range(3)
    ]
    new = load_run(make_run(tmp_path / "new", rows, {i: lognormal(60, 10.0, 0.02, 20 + i) for i in range(3)}))
    row = compare_runs(base, new).pairs.iloc[0]
    assert row["verdict"] == "contended"
    assert "NEW was contended (others used 40% of the cell's cores) in 1 of 3 repeats" in row["why"]


def test_contended_is_a_verdict_the_outputs_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "contended" in VERDICTS
    out_csv, md = tmp_path / "v.csv", tmp_path / "v.md"
    capsys.readouterr()
    argv = [
        "compare",
        str(DRIFT / "quiet"),
        str(DRIFT / "busy"),
        "--csv",
        str(out_csv),
        "--markdown",
        str(md),
    ]
    assert main([*argv, "--fail-on-regression"]) == 0
    assert "contended" in capsys.readouterr().out
    table = pd.read_csv(out_csv)
    assert (table["verdict"] == "contended").sum() >= 6
    assert {"contended_base", "contended_new", "drift_allowance"} <= set(table.columns)
    assert "contended" in md.read_text()


# ------------------------------------------------------------------ hardware
def test_the_comparison_records_hardware_differences(tmp_path: Path) -> None:
    same = compare_runs(run("a"), run("b"))
    assert same.different_hardware is False and same.hardware_differences == []
    other = tmp_path / "other"
    shutil.copytree(DRIFT / "b", other)
    env = json.loads((other / "env.json").read_text())
    env["fingerprint"]["hardware"]["isa"] = ["avx", "avx2", "fma", "f16c"]  # an AVX2 guest
    env["fingerprint"]["hw_id"] = "000000000000"
    (other / "env.json").write_text(json.dumps(env))
    cmp = compare_runs(run("a"), load_run(other))
    assert cmp.different_hardware is True
    assert any("avx512" in line for line in cmp.hardware_differences), cmp.hardware_differences
    merged = compare_runs(run("pooled_a"), run("pooled_b"))  # merged runs: their sources' machines
    assert merged.different_hardware is False

"""compare and baseline check on the generate and sample workloads: each workload's headline metric, TPOT
as a second verdict of a generation, like paired only with like.

Runs are written by the project's own writer with samples.csv holding each generation's whole
call and its prefill and decode steps, as the harness writes them. The synthetic runs have no
run-to-run drift, so tests about a threshold turn the drift allowance off (as test_compare.py does).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from bench.analysis.compare import NOT_COMPARED, Settings, compare_runs
from bench.analysis.matching import match_cells, settings_text
from bench.cli import main
from bench.core.errors import RunError
from bench.render.compare import console_tables, csv_table, to_markdown
from bench.results.merge import write_run
from bench.results.schema import SAMPLE_COLUMNS, cells_frame
from bench.results.store import load_run
from tests.bench.analysis.test_compare import cell, lognormal, make_run

QUIET = Settings(drift_allowance=False)
ENV = {"run_id": "r", "hostname": "host-a", "device": "cpu", "cpu": {"model": "Test CPU", "torch_threads": 1}}


def generation(
    prefill_ms: float, decode_ms: float, new_tokens: int, n: int, seed: int, spread: float = 0.01
) -> list[tuple[str, int, int, float]]:
    """n generations as samples.csv holds them: (phase, iter, step, ms) of the whole call, prefill, decode steps."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, int, int, float]] = []
    for i in range(n):
        prefill = prefill_ms * math.exp(rng.normal(0.0, spread))
        steps = decode_ms * np.exp(rng.normal(0.0, spread, new_tokens - 1))
        out.append(("generate", i, 0, prefill + float(steps.sum())))
        out.append(("prefill", i, 0, prefill))
        out.extend(("decode", i, s + 1, float(ms)) for s, ms in enumerate(steps))
    return out


def gen_cell(cell_id: int, new_tokens: int = 32, **extra: Any) -> dict[str, Any]:
    """A generate row of gpt tiny fp32 batch 1 (prompt 32, static cache), ok, unless ``extra`` says otherwise."""
    defaults = {
        "model": "gpt", "family": "llm", "item": "token", "workload": "generate", "prompt_len": 32,
        "new_tokens": new_tokens, "kv_cache": "static", "psnr_db": None,
    }  # fmt: skip
    return cell(cell_id, **{**defaults, **extra})


def sample_cell(cell_id: int, **extra: Any) -> dict[str, Any]:
    """A sample row of ldm tiny fp32 (10 DDIM steps, guidance 7.5), ok, unless ``extra`` says otherwise."""
    defaults = {"model": "ldm", "family": "diffusion", "workload": "sample", "steps": 10, "guidance": 7.5}
    return cell(cell_id, **{**defaults, "sampler": "ddim", **extra})


def phased_run(
    folder: Path, rows: list[dict[str, Any]], samples: dict[int, list[tuple[str, int, int, float]]]
) -> Path:
    """A run folder through the project's writer; each row's p50 and tokens/s follow its whole-call samples."""
    for row in rows:
        calls = [
            ms
            for phase, _, _, ms in samples.get(row["cell_id"], [])
            if phase == row.get("workload", "forward")
        ]
        if calls and row["status"] == "ok":
            row["latency_ms_p50"] = float(np.median(calls))
            items = row["batch_size"] * (row.get("new_tokens") or 1)
            row["throughput_items_s"] = items / (row["latency_ms_p50"] / 1e3)
    long = [(cid, i, phase, step, ms) for cid, values in samples.items() for phase, i, step, ms in values]
    write_run(folder, cells_frame(rows), pd.DataFrame(long, columns=list(SAMPLE_COLUMNS)), ENV)
    return folder


def generate_pair(
    tmp_path: Path, base: tuple[float, float], new: tuple[float, float], new_tokens: int = 32, n: int = 30
) -> tuple[Path, Path]:
    """Two runs of one generate cell: (prefill ms, decode step ms) on each side."""
    b = phased_run(
        tmp_path / "base", [gen_cell(0, new_tokens)], {0: generation(*base, new_tokens, n, seed=1)}
    )
    m = phased_run(tmp_path / "new", [gen_cell(0, new_tokens)], {0: generation(*new, new_tokens, n, seed=2)})
    return b, m


# ------------------------------------------------------------------ samples
def test_tpot_samples_are_each_generations_mean_decode_step(tmp_path: Path) -> None:
    samples = generation(10.0, 1.0, 5, 3, seed=0)
    run = load_run(phased_run(tmp_path / "r", [gen_cell(0, 5)], {0: samples}))
    tpots = run.tpot_by_cell()[0]
    expected = [
        np.mean([ms for phase, i, _, ms in samples if phase == "decode" and i == it]) for it in range(3)
    ]
    assert tpots == pytest.approx(expected)
    calls = run.samples_by_cell()[0]  # whole generations only: prefill and decode steps left out
    assert len(calls) == 3 and calls[0] == pytest.approx(samples[0][3])


# ------------------------------------------------------------------ generate: tokens/s and TPOT
def test_decode_twice_as_slow_regresses_on_tpot_though_prefill_dominates(tmp_path: Path) -> None:
    """Prefill 400 ms and 31 decode steps of 1 ms -> 2 ms: e2e 431 -> 462 ms (+7%, within 10%), TPOT x2."""
    base, new = generate_pair(tmp_path, (400.0, 1.0), (400.0, 2.0))
    row = compare_runs(
        load_run(base), load_run(new), Settings(threshold=0.1, drift_allowance=False)
    ).pairs.iloc[0]
    assert row["headline"] == "tokens/s" and row["headline_speed"] == "unchanged", row["why"]
    assert row["tpot_speed"] == "regressed"
    assert row["tpot_ratio"] == pytest.approx(2.0, rel=0.02)
    assert row["tpot_ms_base"] == pytest.approx(1.0, rel=0.02) and row["tpot_ms_new"] == pytest.approx(
        2.0, rel=0.02
    )
    assert row["verdict"] == "regressed" and row["why"].startswith("TPOT regressed"), row["why"]
    assert "tokens/s interval within" in row["why"]


def test_tokens_per_second_ratio_reads_faster_as_above_one(tmp_path: Path) -> None:
    base, faster = generate_pair(tmp_path, (20.0, 2.0), (10.0, 1.0))  # the whole generation twice as fast
    row = compare_runs(load_run(base), load_run(faster), QUIET).pairs.iloc[0]
    assert row["latency_ratio"] == pytest.approx(0.5, rel=0.03)
    assert row["headline_ratio"] == pytest.approx(2.0, rel=0.03)
    assert row["headline_ratio_lo"] <= row["headline_ratio"] <= row["headline_ratio_hi"]
    assert row["headline_ratio_lo"] == pytest.approx(1 / row["latency_ratio_hi"])
    assert row["headline_new"] == pytest.approx(2 * row["headline_base"], rel=0.03)
    assert row["headline_base"] == pytest.approx(
        32 * 1e3 / row["p50_ms_base"]
    )  # batch 1 x 32 new tokens / e2e
    assert row["headline_speed"] == "improved" and row["tpot_speed"] == "improved"
    assert row["verdict"] == "improved" and "tokens/s faster: interval all above +5%" in row["why"]
    back = compare_runs(load_run(faster), load_run(base), QUIET).pairs.iloc[0]
    assert back["headline_ratio"] == pytest.approx(0.5, rel=0.03) and back["verdict"] == "regressed"
    assert "tokens/s slower: interval all below -4.8%" in back["why"]


def test_a_regression_of_tokens_per_second_alone_says_so(tmp_path: Path) -> None:
    base, new = generate_pair(tmp_path, (10.0, 1.0), (40.0, 1.0))  # prefill 4x: e2e 41 -> 71 ms, same TPOT
    row = compare_runs(load_run(base), load_run(new), QUIET).pairs.iloc[0]
    assert row["tpot_speed"] == "unchanged" and row["headline_speed"] == "regressed"
    assert row["verdict"] == "regressed" and row["why"].startswith("tokens/s regressed")


def test_the_floor_holds_tpot_to_a_whole_generations_decode(tmp_path: Path) -> None:
    """TPOT 1 -> 2 ms over 31 decode steps costs a generation at least ~30 ms: above a 20 ms floor, below 40."""
    base, new = generate_pair(tmp_path, (400.0, 1.0), (400.0, 2.0))
    above = compare_runs(
        load_run(base), load_run(new), Settings(threshold=0.1, min_change_ms=20.0, drift_allowance=False)
    )
    below = compare_runs(
        load_run(base), load_run(new), Settings(threshold=0.1, min_change_ms=40.0, drift_allowance=False)
    )
    assert above.pairs.iloc[0]["tpot_speed"] == "regressed"
    assert (
        below.pairs.iloc[0]["tpot_speed"] == "unchanged"
        and "within the 40 ms floor" in below.pairs.iloc[0]["why"]
    )


def test_the_drift_allowance_applies_to_tpot_as_well(tmp_path: Path) -> None:
    base, new = generate_pair(tmp_path, (400.0, 1.0), (400.0, 2.0))
    row = compare_runs(load_run(base), load_run(new), Settings(threshold=0.1)).pairs.iloc[0]
    assert row["tpot_speed"] == "noisy" and row["drift_allowance"] == pytest.approx(1.25)
    assert "TPOT slower beyond +-10%, but not beyond it and the x2.25 run-to-run drift" in row["why"]
    tripled = generate_pair(tmp_path / "x3", (400.0, 1.0), (400.0, 3.0))
    assert (
        compare_runs(*map(load_run, tripled), Settings(threshold=0.1)).pairs.iloc[0]["tpot_speed"]
        == "regressed"
    )


def test_a_contended_generation_judges_neither_metric(tmp_path: Path) -> None:
    base = phased_run(tmp_path / "b", [gen_cell(0)], {0: generation(10.0, 1.0, 32, 20, seed=1)})
    new = phased_run(
        tmp_path / "n",
        [gen_cell(0, contended=True, host_busy_pct=70.0)],
        {0: generation(10.0, 3.0, 32, 20, seed=2)},
    )
    row = compare_runs(load_run(base), load_run(new), QUIET).pairs.iloc[0]
    assert row["verdict"] == row["headline_speed"] == row["tpot_speed"] == "contended"
    assert row["tpot_ratio"] == pytest.approx(3.0, rel=0.03)  # still measured and shown


def test_generate_runs_without_decode_samples_are_noisy_on_tpot(tmp_path: Path) -> None:
    base, new = generate_pair(tmp_path, (10.0, 1.0), (10.0, 3.0))
    samples = pd.read_csv(new / "samples.csv")
    write_run(new, load_run(new).cells, samples[samples["phase"] == "generate"], ENV)
    row = compare_runs(load_run(base), load_run(new), QUIET).pairs.iloc[0]
    assert (
        row["tpot_speed"] == "noisy" and "too few TPOT samples for an interval (BASE 30, NEW 0)" in row["why"]
    )
    assert row["headline_speed"] == "regressed" and row["verdict"] == "regressed"


# ------------------------------------------------------------------ sample: s/image
def test_a_sampling_pair_is_judged_on_seconds_per_image(tmp_path: Path) -> None:
    base = make_run(tmp_path / "b", [sample_cell(0, batch_size=2)], {0: lognormal(30, 50.0, 0.01, 1)})
    new = make_run(tmp_path / "n", [sample_cell(0, batch_size=2)], {0: lognormal(30, 100.0, 0.01, 2)})
    # make_run writes forward-phase samples; a sampling run's whole calls are the "sample" phase
    for run in (base, new):
        samples = pd.read_csv(run / "samples.csv").assign(phase="sample")
        write_run(run, load_run(run).cells, samples, ENV)
    cmp = compare_runs(load_run(base), load_run(new), QUIET)
    row = cmp.pairs.iloc[0]
    assert row["headline"] == "s/image" and row["headline_ratio"] == pytest.approx(row["latency_ratio"])
    assert row["headline_base"] == pytest.approx(row["p50_ms_base"] / 1e3 / 2)
    assert row["verdict"] == "regressed" and row["why"].startswith("s/image slower")
    assert row["settings"] == "10 ddim steps, guidance 7.5" and row["tpot_speed"] == ""
    assert "s/image ratio" in to_markdown(cmp)


# ------------------------------------------------------------------ like with like
def test_other_new_tokens_are_not_paired_and_say_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forward = lognormal(30, 10.0, 0.01, 5)
    base = phased_run(
        tmp_path / "b", [gen_cell(0, 32), cell(1)],
        {0: generation(10.0, 1.0, 32, 10, seed=1), 1: [("forward", i, 0, ms) for i, ms in enumerate(forward)]},
    )  # fmt: skip
    new = phased_run(
        tmp_path / "n", [gen_cell(0, 128), cell(1)],
        {0: generation(10.0, 1.0, 128, 10, seed=2), 1: [("forward", i, 0, ms) for i, ms in enumerate(forward)]},
    )  # fmt: skip
    cmp = compare_runs(load_run(base), load_run(new), QUIET)
    assert cmp.pairs["model"].tolist() == ["dcgan"] and cmp.only_base.empty and cmp.only_new.empty
    assert cmp.mismatched["why"].tolist() == ["different workload settings (new_tokens 32 vs 128)"]
    assert "1 with other workload settings on each side (not compared)" in cmp.summary_line()
    table = csv_table(cmp).set_index("model")
    assert table.loc["gpt", "verdict"] == NOT_COMPARED
    assert "new_tokens 32 vs 128" in table.loc["gpt", "why"]
    assert (
        "- gpt/tiny fp32 (torch-eager) b1: different workload settings (new_tokens 32 vs 128)"
        in to_markdown(cmp)
    )
    console = Console(width=160, record=True)
    for renderable in console_tables(cmp, 160):
        console.print(renderable)
    assert (
        "not compared: gpt/tiny fp32 b1: different workload settings (new_tokens 32 vs 128)"
        in console.export_text()
    )
    assert main(["compare", str(base), str(new), "--fail-on-regression"]) == 0
    # with nothing else to compare, the mismatch is the error
    only = phased_run(tmp_path / "o", [gen_cell(0, 128)], {0: generation(10.0, 1.0, 128, 10, seed=3)})
    with pytest.raises(RunError, match=r"no cell in common \(1 cells differ: different workload settings"):
        compare_runs(load_run(phased_run(tmp_path / "p", [gen_cell(0, 32)], {})), load_run(only))


def test_settings_of_every_workload_must_match() -> None:
    base = cells_frame([gen_cell(0), sample_cell(1), cell(2)])
    new = cells_frame(
        [
            gen_cell(0, kv_cache="dynamic"),
            sample_cell(1, sampler="euler", guidance=1.0),
            cell(2, workload="generate"),
        ]
    )
    matches = match_cells(base, new)
    assert matches.pairs == [] and matches.only_base == [] and matches.only_new == []
    assert [why for _, _, why in matches.mismatched] == [
        "different workload settings (kv_cache static vs dynamic)",
        "different workload settings (guidance 7.5 vs 1, sampler ddim vs euler)",
        "different workloads (forward vs generate)",
    ]
    assert settings_text(base.iloc[0]) == "prompt 32 + 32 new tokens, static cache"


def test_rows_without_a_workload_are_forward_calls(tmp_path: Path) -> None:
    """A cells.csv written before schema 5 has no workload column: its cells pair with forward cells."""
    base = make_run(tmp_path / "old", [cell(0)], {0: lognormal(30, 10.0, 0.01, 1)})
    cells = pd.read_csv(base / "cells.csv").drop(columns=["workload"])
    cells.to_csv(base / "cells.csv", index=False)
    (base / "manifest.json").unlink()  # the table changed after it was written: read as a folder without one
    new = make_run(tmp_path / "new", [cell(0, workload="forward")], {0: lognormal(30, 10.0, 0.01, 2)})
    row = compare_runs(load_run(base), load_run(new), QUIET).pairs.iloc[0]
    assert row["workload"] == "forward" and row["headline"] == "latency" and row["verdict"] == "unchanged"


def test_a_generation_that_broke_is_still_paired(tmp_path: Path) -> None:
    """A cell that errored has no settings: it pairs with its ok cell on the loose key, ok -> error."""
    base = phased_run(tmp_path / "b", [gen_cell(0)], {0: generation(10.0, 1.0, 32, 10, seed=1)})
    broken = gen_cell(
        0, status="error", reason="RuntimeError: boom", prompt_len=None, new_tokens=None, kv_cache=None
    )
    new = phased_run(tmp_path / "n", [broken], {})
    row = compare_runs(load_run(base), load_run(new)).pairs.iloc[0]
    assert row["verdict"] == "regressed" and "ok -> error" in row["why"]


# ------------------------------------------------------------------ baseline check
def test_baseline_check_fails_on_a_tpot_regression(tmp_path: Path) -> None:
    base, new = generate_pair(tmp_path, (400.0, 1.0), (400.0, 3.0))
    root, md = tmp_path / "baselines", tmp_path / "summary.md"
    assert main(["baseline", "save", str(base), "--root", str(root), "--name", "ci"]) == 0
    argv = ["baseline", "check", str(new), "--root", str(root), "--name", "ci", "--markdown", str(md)]
    assert main([*argv, "--threshold", "10%", "--fail-on-regression"]) == 1
    text = md.read_text()
    assert text.startswith("### genbench compare: REGRESSION") and "TPOT regressed" in text
    assert "tokens/s ratio [95% CI]" in text and "TPOT ratio [95% CI]" in text

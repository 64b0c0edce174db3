"""Projection onto hardware genbench cannot measure on: the kind's prior and its band, `uncalibrated` rows,
missing peaks as `no-figure` rows, memory fit on shared-memory edge devices, power modes, and target names
on the command line (close matches for a typo).

The synthetic cells come from test_projection (their throughput is an exact fraction of a toy GPU's roofline),
so every expected figure is worked out in the test from the catalogue's own numbers.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.analysis.projection import UNCALIBRATED_SPREAD, project
from bench.analysis.roofline import GIB, RUNTIME_RESERVE_BYTES, WORKSPACE_FRACTION, roofline
from bench.analysis.source import Source
from bench.cli import main
from bench.hardware.catalog import load_catalog
from tests.bench.analysis.test_projection import PROFILE, SOURCE, synthetic_cells, traffic
from tests.bench.hardware.test_catalog import VALID_DEVICE, user_file

#: a committed run of schema 5 (bytes moved traced; dcgan, vae, unet, gpt and ldm at small) on the "AMD EPYC" guest
RUN = Path(__file__).resolve().parents[3] / "results" / "cpu-default-20261202-schema5"


def _rows(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    return frame[frame["target"] == target].set_index(["pipeline", "batch_size"])


def test_an_uncalibrated_target_uses_its_kind_prior_whatever_the_measured_efficiency() -> None:
    catalog = load_catalog()
    tpu = catalog.devices["tpu-v5e"]
    prior = catalog.kinds["tpu"].prior
    assert prior is not None and not tpu.calibrated
    frames = [
        project(synthetic_cells(SOURCE, {("fp32", "fp32"): eff}), Source(SOURCE, "t"), [tpu, SOURCE])
        for eff in (0.5, 0.05)
    ]
    for frame in frames:
        row = _rows(frame, "tpu-v5e").loc[("fp32", 8)]
        assert row["status"] == "ok" and row["calibration"] == "uncalibrated"
        assert row["calibrated_from"] == "prior:tpu" and row["reason"].startswith("fp32 runs as bf16 on tpu")
        assert "uncalibrated: genbench cannot measure on tpu" in row["reason"]
        # an fp32 pipeline is bounded by the bf16 peak on XLA, at the prior efficiency
        bound = roofline(2e9, traffic(PROFILE, "fp32").bytes_per_item(8), 197e12, 819e9)
        assert row["target_precision"] == "bf16" and row["roofline_items_s"] == pytest.approx(bound.items_s)
        assert row["efficiency"] == pytest.approx(prior.value)
        assert row["throughput_items_s"] == pytest.approx(prior.value * bound.items_s)
        # the band: the published spread, widened either way, capped at the roof; it contains the prior
        assert row["efficiency_lo"] == pytest.approx(prior.lo / UNCALIBRATED_SPREAD)
        assert row["efficiency_hi"] == pytest.approx(min(1.0, prior.hi * UNCALIBRATED_SPREAD))
        assert row["throughput_items_s_lo"] < row["throughput_items_s"] < row["throughput_items_s_hi"]
        assert row["efficiency_hi"] / row["efficiency_lo"] >= UNCALIBRATED_SPREAD**2  # a wide band
        # the measured device itself stays calibrated by its own cells
        assert _rows(frame, "source").loc[("fp32", 8), "calibration"] == "measured"
    assert frames[0].loc[frames[0]["target"] == "source", "efficiency"].iloc[0] == pytest.approx(0.5)


def test_a_peak_the_vendor_does_not_publish_is_a_no_figure_row() -> None:
    catalog = load_catalog()
    nano = catalog.devices["jetson-orin-nano-8gb"]
    cells = synthetic_cells(SOURCE, {("fp32", "fp32"): 0.5, ("bf16", "bf16"): 0.2})
    cells = pd.concat([cells, cells[cells["pipeline"] == "fp32"].assign(pipeline="int8", precision="int8")])
    frame = _rows(project(cells, Source(SOURCE, "t"), [nano]), "jetson-orin-nano-8gb")
    for pipeline in ("fp32", "bf16"):
        row = frame.loc[(pipeline, 1)]
        assert row["status"] == "no-figure" and "no published" in row["reason"]
        assert "gives INT8 TOPS only" in row["reason"] and math.isnan(row["throughput_items_s"])
    int8 = frame.loc[("int8", 1)]  # the one precision NVIDIA gives: projected at the edge-gpu prior
    assert (
        int8["status"] == "ok" and int8["calibration"] == "uncalibrated" and int8["target_peak_tflops"] == 20
    )
    assert int8["items_per_joule"] == pytest.approx(int8["throughput_items_s"] / 15)  # the 15 W top mode


EDGE = (
    VALID_DEVICE.replace("devices.toy", "devices.edge")
    .replace('"toy-1"', '"edge-1"')
    .replace('kind = "accelerator"', 'kind = "edge-gpu"')
)


def _edge_catalog(tmp_path: Path, memory_gib: float, reserve_gib: float | None) -> Path:
    body = EDGE.replace(
        'memory = { value = 16, unit = "GiB"', f'memory = {{ value = {memory_gib}, unit = "GiB"'
    )
    extra = 'shared_memory = true\ntop_mode = "max"\n'
    if reserve_gib is not None:
        extra += f'os_reserve = {{ value = {reserve_gib}, unit = "GiB", source = "measured with tegrastats (2026)" }}\n'
    body = body.replace('per = "device"\n', 'per = "device"\n' + extra)
    body += """
[devices.edge.power_modes]
max = { power = { value = 100, unit = "W", source = "Toy datasheet (2024)" } }
eco = { power = { value = 25, unit = "W", source = "Toy datasheet (2024)" }, peak = { fp32 = { value = 4, unit = "TFLOPS", source = "Toy datasheet (2024)" } } }
quiet = { power = { value = 10, unit = "W", source = "Toy datasheet (2024)" } }
"""
    return user_file(tmp_path, body)


def test_edge_memory_fit_leaves_the_os_share_out(tmp_path: Path) -> None:
    # fp32 PROFILE: 4000 B of weights, 264 B per item with workspace, 1 GiB runtime reserve (edge-gpu: the default)
    per_item = 60 * 4 * (1 + WORKSPACE_FRACTION)
    fixed = 4000 + RUNTIME_RESERVE_BYTES.get("edge-gpu", GIB)
    room = fixed + 7.5 * per_item  # the model's room: 7 items fit, 8 do not
    reserve = 1.0  # GiB the OS keeps
    memory = (room + reserve * GIB) / GIB
    cells = synthetic_cells(SOURCE, {("fp32", "fp32"): 0.5}, batches=(1, 8))
    with_os = load_catalog(_edge_catalog(tmp_path, memory, reserve)).find("edge")
    frame = project(cells, Source(SOURCE, "t"), [with_os], batch_sizes=(7, 8)).set_index("batch_size")
    assert frame.loc[7, "status"] == "ok" and frame.loc[7, "max_batch"] == 7
    assert frame.loc[7, "target_usable_mem_gib"] == pytest.approx(memory - reserve)
    assert "left after the OS and runtime's 1 GiB" in frame.loc[7, "reason"]
    assert frame.loc[8, "status"] == "does-not-fit" and "GiB usable" in frame.loc[8, "reason"]
    # the same module without a measured OS share: the whole memory, flagged as an upper bound
    without = load_catalog(_edge_catalog(tmp_path, memory, None)).find("edge")
    frame = project(cells, Source(SOURCE, "t"), [without], batch_sizes=(8,))
    assert frame.loc[0, "status"] == "ok" and frame.loc[0, "max_batch"] > 8
    assert "so an upper bound" in frame.loc[0, "reason"]


def test_a_power_mode_projects_at_its_own_figures_and_power(tmp_path: Path) -> None:
    catalog = load_catalog(_edge_catalog(tmp_path, 16, 2))
    cells = synthetic_cells(SOURCE, {("fp32", "fp32"): 0.5}, batches=(8,))
    targets = [catalog.find("edge@eco"), catalog.find("edge@max"), catalog.find("edge@quiet")]
    frame = project(cells, Source(SOURCE, "t"), targets).set_index("target")
    eco, top, quiet = frame.loc["edge@eco"], frame.loc["edge@max"], frame.loc["edge@quiet"]
    assert (
        eco["target_peak_tflops"] == 4 and top["target_peak_tflops"] == 10
    )  # the mode's peak, the headline one
    assert eco["power_w"] == 25 and eco["items_per_joule"] == pytest.approx(eco["throughput_items_s"] / 25)
    assert top["items_per_joule"] == pytest.approx(top["throughput_items_s"] / 100)
    assert "items/J at the eco mode's 25 W" in eco["reason"]
    assert quiet["status"] == "no-figure" and "only its power" in quiet["reason"]


def test_unknown_targets_are_one_line_with_close_matches(
    tmp_path: Path, cached_cpu_peak: None, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Path(shutil.copytree(RUN, tmp_path / "run"))
    for target, message in [
        ("tpu-v5", "unknown device 'tpu-v5'; did you mean tpu-v5e"),
        ("trainium3", "unknown device 'trainium3'; did you mean"),
        ("jetson-orin-nano@5w", "unknown power mode '5w' of jetson-orin-nano-8gb"),
        ("l4@max", "'l4' has no power modes"),
    ]:
        assert main(["project", "--from", str(run), "--targets", f"l4,{target}"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"genbench: error: {message}") and err.count("\n") == 1, err
    assert not (run / "projection.csv").exists()


def test_project_a_real_run_onto_a_tpu_with_the_plot(
    tmp_path: Path, cached_cpu_peak: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The committed CPU run (its peak cached as measured) onto a TPU, an FPGA card and a Jetson mode."""
    pytest.importorskip("matplotlib")
    run = Path(shutil.copytree(RUN, tmp_path / "run"))
    plot = tmp_path / "plots" / "projection.png"
    argv = [
        "project",
        "--from",
        str(run),
        "--targets",
        "l4,tpu-v5e,u50lv,jetson-agx-orin@maxn",
        "--plot",
        str(plot),
    ]
    assert main(argv) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "uncalibrated" in out and f"plot written to {plot}" in out
    frame = pd.read_csv(run / "projection.csv")
    assert set(frame["target"]) == {"l4", "tpu-v5e", "alveo-u50lv", "jetson-agx-orin-64gb@maxn"}
    calibration = frame.groupby("target")["calibration"].unique()
    assert list(calibration["l4"]) == ["measured"]
    for target in ("tpu-v5e", "alveo-u50lv", "jetson-agx-orin-64gb@maxn"):
        assert list(calibration[target]) == ["uncalibrated"]
    tpu_ok = frame[(frame["target"] == "tpu-v5e") & (frame["status"] == "ok")]
    assert not tpu_ok.empty and set(tpu_ok["target_precision"]) <= {"bf16", "int8"}
    fp32 = tpu_ok[tpu_ok["precision"] == "fp32"]
    assert not fp32.empty and (fp32["target_precision"] == "bf16").all()  # XLA runs fp32 matmuls in bf16
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_a_plot_that_cannot_be_drawn_fails_before_anything_runs(
    tmp_path: Path, cached_cpu_peak: None, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Path(shutil.copytree(RUN, tmp_path / "run"))
    assert main(["project", "--from", str(run), "--targets", "l4", "--plot", str(tmp_path / "p.svg")]) == 2
    assert "give a .png file name" in capsys.readouterr().err
    assert not (run / "projection.csv").exists()

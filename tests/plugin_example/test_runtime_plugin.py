"""The example runtime plugin (tests/plugin_example/runtime): found through its entry points as an installed package
would be, runs a real cell on CPU end to end, is skipped with its reason where it cannot run, and is the README's.

The ready-made ``.dist-info`` beside the module is what ``pip install`` of that folder leaves in site-packages;
the folder goes on sys.path for one test at a time, so no other test sees the plugin.
"""

from __future__ import annotations

import configparser
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import bench.runtimes.base as runtimes
import optimizers.base as passes
from bench.core.device import Device
from bench.runtimes import RUNTIMES, all_runtimes, runtime_unavailable
from optimizers.registry import PASSES, all_passes, parse_pipeline
from tests.conftest import readme_block

PLUGIN_DIR = Path(__file__).resolve().parent / "runtime"
SECTION = "## Write your own runtime"
KIND = "example-xla"


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The plugin discovered through its entry points; the registries as they were afterwards."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.setattr(passes, "_entry_points_loaded", False)
    runtimes.load_entry_points.cache_clear()
    yield
    PASSES.pop(KIND, None)
    RUNTIMES.pop(KIND, None)
    runtimes.load_entry_points.cache_clear()


def test_both_entry_points_are_discovered(plugin: None) -> None:
    assert KIND in all_runtimes() and KIND in all_passes()
    assert runtimes.load_entry_points() == ()  # nothing failed to load
    assert parse_pipeline(KIND).final_kind == KIND
    assert runtime_unavailable(KIND, Device("cpu")) is None
    assert runtime_unavailable(KIND, Device("cuda", 0)) == "the example-xla stand-in runs on the CPU only"


def test_a_cell_runs_on_the_plugin_runtime_end_to_end(plugin: None, run_matrix) -> None:
    frame = run_matrix(models=("dcgan",), pipelines=("fp32", KIND), batch_sizes=(2,))
    assert list(frame["status"]) == ["ok", "ok"], frame["reason"].tolist()
    row = frame.iloc[1]
    assert row["runtime"] == "example-xla (CPU stand-in)"
    assert "example-xla: CPU stand-in, no XLA device" in row["notes"]
    assert row["throughput_items_s"] > 0 and row["psnr_db"] > 100  # the same module: the same output
    assert row["model_bytes"] == frame.iloc[0]["model_bytes"]  # from the artifact's stored_bytes
    assert row["gflops_per_item"] == pytest.approx(
        frame.iloc[0]["gflops_per_item"]
    )  # traced on its torch model


def test_without_the_plugin_the_kind_has_no_runtime() -> None:
    runtimes.load_entry_points.cache_clear()
    try:
        assert runtime_unavailable(KIND, Device("cpu")) == f"no runtime is registered for {KIND} artifacts"
    finally:
        runtimes.load_entry_points.cache_clear()


def test_the_shipped_dist_info_declares_what_the_pyproject_does() -> None:
    declared = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text())["project"]["entry-points"]
    shipped = configparser.ConfigParser()
    shipped.read_string(
        (PLUGIN_DIR / "genbench_example_runtime-0.1.0.dist-info" / "entry_points.txt").read_text()
    )
    for group in ("genbench.passes", "genbench.runtimes"):
        assert dict(shipped[group]) == declared[group]


def _readme_block(language: str) -> str:
    return readme_block(SECTION, language)


def test_the_readme_runtime_is_the_tested_plugin() -> None:
    assert _readme_block("python") == (PLUGIN_DIR / "genbench_example_runtime.py").read_text()


def test_the_readme_pyproject_is_the_tested_one() -> None:
    assert _readme_block("toml") == (PLUGIN_DIR / "pyproject.toml").read_text()

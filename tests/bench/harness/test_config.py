"""RunConfig validation: numbers no run can use and unreadable run files are one ConfigError, not error rows."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.core.errors import ConfigError
from bench.harness.config import MAX_COUNT, MAX_SEED, RunConfig, build_config, load_toml


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"time_budget_s": math.nan}, "--time-budget must be > 0 seconds and finite"),
        ({"time_budget_s": math.inf}, "--time-budget must be > 0 seconds and finite"),
        ({"warmup_s": math.nan}, "--warmup must be >= 0 seconds and finite"),
        ({"warmup_s": math.inf}, "--warmup must be >= 0 seconds and finite"),
        ({"min_psnr_db": math.nan}, "--min-psnr must be a number of dB"),
        ({"min_psnr_db": -math.inf}, "--min-psnr must be a number of dB"),
        ({"seed": 99999999999999999999999}, f"--seed must be from 0 to {MAX_SEED}"),
        ({"seed": -1}, "--seed must be from 0"),
        ({"batch_sizes": (1, 2**31)}, f"batch sizes must be positive integers up to {MAX_COUNT}"),
        ({"min_samples": 10**9}, "--min-samples must be from 1 to 100,000"),
        ({"threads": 2**40}, "--threads must be from 1"),
        ({"repeats": 10**12}, "--repeats must be from 1"),
        ({"time_budget_s": 1e308}, "no finite cell timeout"),
    ],
)
def test_numbers_no_run_can_use_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig(**values)  # type: ignore[arg-type]


def test_the_edges_of_each_range_are_accepted() -> None:
    config = RunConfig(seed=MAX_SEED, batch_sizes=(1, MAX_COUNT), min_psnr_db=math.inf, warmup_s=0.0)
    assert config.seed == MAX_SEED and config.min_psnr_db == math.inf  # inf: bit-identical output only
    assert RunConfig(min_psnr_db=-5.0).min_psnr_db == -5.0


def test_huge_values_from_a_run_file_are_config_errors(tmp_path: Path) -> None:
    run_file = tmp_path / "run.toml"
    run_file.write_text("batch-sizes = [1, 99999999999999999999]\n")  # TOML integers are unbounded in Python
    with pytest.raises(ConfigError, match="batch sizes must be positive integers"):
        build_config(load_toml(run_file), {})
    run_file.write_text("time-budget = nan\n")
    with pytest.raises(ConfigError, match="--time-budget"):
        build_config(load_toml(run_file), {})
    run_file.write_text('batch-sizes = "8,99999999999999999999999"\n')
    with pytest.raises(ConfigError, match="batch sizes"):
        build_config(load_toml(run_file), {})


def test_a_config_that_is_a_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"config file {tmp_path} is a folder"):
        load_toml(tmp_path)


def test_a_binary_config_is_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "model.pt"
    binary.write_bytes(b"PK\x03\x04\xff\xfe\x00\x00 not toml")
    with pytest.raises(ConfigError, match=rf"config file {binary} is not a text file") as caught:
        load_toml(binary)
    assert "\n" not in str(caught.value)


def test_a_missing_config_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "nope.toml")


def test_a_config_survives_its_json_form() -> None:
    """What env.json records and a worker process receives reads back as the same config."""
    import json

    from bench.harness.config import RunConfig

    config = RunConfig(
        models=("dcgan", "vae"), pipelines=("fp32", "int8"), batch_sizes=(1, 8), threads=1, repeats=2
    )
    assert RunConfig.from_json(json.loads(json.dumps(config.to_json()))) == config

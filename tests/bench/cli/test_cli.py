"""The command line: bad input is one line and exit code 2; good input writes a run folder."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.cli import main
from bench.results.store import read_cells

TINY = ["--size", "tiny", "--time-budget", "0.1", "--min-samples", "3"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--models", "llama"], "unknown model 'llama'; choose from dcgan, vae, unet, gpt, ldm"),
        (["run", "--models", "unte"], "did you mean unet?"),
        (["run", "--pipelines", "channel_last"], "did you mean channels_last?"),
        (["run", "--pipeline", "fp32"], "unrecognized arguments: --pipeline fp32; did you mean --pipelines?"),
        (["run", "--time-budge", "1"], "did you mean --time-budget?"),
        (["run", "--size", "smal"], "did you mean small?"),
        (["run", "--pipelines", "fp32,turbo"], "unknown pass 'turbo'"),
        (["run", "--pipelines", "fp32+"], "malformed pipeline"),
        (["run", "--pipelines", "compile:fastest"], "compile mode 'fastest' unknown"),
        (["run", "--size", "huge"], "unknown size 'huge'; choose from tiny, small, base"),
        (["run", "--device", "tpu"], "unknown device 'tpu'; use cpu, cuda or cuda:N"),
        (["run", "--batch-sizes", "0,8"], "batch sizes must be positive"),
        (["run", "--batch-sizes", "a"], "batch_sizes must be integers"),
        (["run", "--model", "no_such_module_xyz:factory"], "no_such_module_xyz"),
        (["run", "--model", "nocolon"], "pkg.module:factory"),
        (["run", "--time-budget", "-1"], "--time-budget must be > 0"),
        (["run", "--batch-sizes", "1.5"], "batch_sizes must be integers"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("genbench: error: ")
    assert message in err
    assert err.count("\n") == 1, err
    assert not (tmp_path / "results").exists()  # nothing ran


def test_cuda_without_a_gpu_is_one_line(capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    assert main(["run", "--device", "cuda:0"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_config_file_unknown_key(tmp_path, capsys) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text('models = ["dcgan"]\nbatch-size = 4\n')
    assert main(["run", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'batch-size'" in err and "did you mean batch-sizes?" in err


def test_config_file_not_toml(tmp_path, capsys) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text("models = [dcgan\n")
    assert main(["run", "--config", str(cfg)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_config_file_with_overrides_runs(tmp_path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        '[run]\nmodels = ["dcgan", "unet"]\nsize = "tiny"\npipelines = ["fp32", "channels_last"]\n'
        "batch-sizes = [1]\ntime_budget_s = 0.1\nmin_samples = 3\n"
    )
    out = tmp_path / "out"
    assert main(["run", "--config", str(cfg), "--models", "dcgan", "--out", str(out)]) == 0
    frame = read_cells(out)
    assert set(frame["model"]) == {"dcgan"}  # the flag overrode the file
    assert list(frame["pipeline"]) == ["fp32", "channels_last"]
    assert (
        (out / "env.json").is_file() and (out / "samples.csv").is_file() and (out / "cells.parquet").is_file()
    )


def test_pipelines_without_fp32_still_get_the_baseline(tmp_path) -> None:
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                "--models",
                "dcgan",
                "--pipelines",
                "channels_last",
                "--batch-sizes",
                "1",
                "--out",
                str(out),
                *TINY,
            ]
        )
        == 0
    )
    frame = read_cells(out)
    assert list(frame["pipeline"]) == ["fp32", "channels_last"]


def test_bring_your_own_model(tmp_path, monkeypatch) -> None:
    (tmp_path / "mymodels.py").write_text(
        "import torch\n"
        "def make():\n"
        "    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh())\n"
        "    return net, lambda b: (torch.randn(b, 8),)\n"
    )
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                "--model",
                "mymodels:make",
                "--pipelines",
                "fp32,bf16",
                "--batch-sizes",
                "4",
                "--out",
                str(out),
                *TINY,
            ]
        )
        == 0
    )
    frame = read_cells(out)
    assert list(frame["model"]) == ["mymodels:make", "mymodels:make"]
    assert list(frame["status"]) == ["ok", "ok"]
    assert frame.iloc[0]["params"] == 8 * 16 + 16


def test_list_shows_models_and_passes(capsys) -> None:
    assert main(["list", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for word in ("dcgan", "vae", "unet", "tiny", "small", "base", "fp32", "bf16", "channels_last", "compile"):
        assert word in out


@pytest.mark.parametrize(
    "command", ["run", "list", "env", "compare", "report", "merge", "devices", "peak", "project"]
)
def test_help_has_examples(command, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "example" in capsys.readouterr().out


def test_module_entry_point_and_light_import() -> None:
    code = (
        "import sys, torch; before = set(sys.modules); "  # torch.cuda imports pynvml itself where it is installed
        "import bench, bench.cli, bench.harness.config, bench.core.device, optimizers; "
        "heavy = ('onnxruntime', 'tensorrt', 'pynvml', 'torch_pruning', 'matplotlib'); "
        "print([m for m in heavy if m in sys.modules and m not in before])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    help_out = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], capture_output=True, text=True, check=True
    )
    assert "run" in help_out.stdout and "list" in help_out.stdout


def test_env_prints_json(capsys) -> None:
    import json

    assert main(["env"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert "torch" in env["packages"] and env["cpu"]["logical_cores"] >= 1
    sha = env["git_sha"].removesuffix("+dirty")
    assert sha == "unknown" or (len(sha) == 40 and all(c in "0123456789abcdef" for c in sha))


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("device = 3", "device must be str or none, got 3"),
        ('seed = "x"', "seed must be int"),
        ("time_budget_s = true", "time_budget_s must be int or float"),
        ("batch_sizes = [1.5]", "batch_sizes must be integers"),
        ('models = "dcgan,llama"', "unknown model 'llama'"),
    ],
)
def test_config_values_are_type_checked(tmp_path, capsys, toml, message) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text(toml + "\n")
    assert main(["run", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_repeated_pipelines_and_batch_sizes_run_once(tmp_path) -> None:
    out = tmp_path / "out"
    argv = [
        "run",
        "--models",
        "dcgan,dcgan",
        "--pipelines",
        "fp32,channels_last,fp32",
        "--batch-sizes",
        "2,2",
    ]
    assert main([*argv, "--out", str(out), *TINY]) == 0
    frame = read_cells(out)
    assert list(frame["pipeline"]) == ["fp32", "channels_last"]


def test_an_existing_run_folder_is_not_overwritten(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    argv = ["run", "--models", "dcgan", "--pipelines", "fp32", "--batch-sizes", "1", "--out", str(out), *TINY]
    assert main(argv) == 0
    before = (out / "cells.csv").read_bytes()
    assert main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "cells.csv").read_bytes() == before
    (tmp_path / "afile").write_text("x")
    assert main([*argv[: -len(TINY) - 2], "--out", str(tmp_path / "afile"), *TINY]) == 2
    assert "is a file" in capsys.readouterr().err


def test_result_files_are_readable_by_others(tmp_path) -> None:
    import os
    import stat

    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        assert (
            main(
                [
                    "run",
                    "--models",
                    "dcgan",
                    "--pipelines",
                    "fp32",
                    "--batch-sizes",
                    "1",
                    "--out",
                    str(out),
                    *TINY,
                ]
            )
            == 0
        )
    finally:
        os.umask(old)
    for name in ("cells.csv", "cells.parquet", "cells.json", "samples.csv", "env.json"):
        assert (out / name).stat().st_mode & stat.S_IROTH, name


def test_no_command_lists_every_command_with_one_line(capsys) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    for command in (
        "run",
        "list",
        "env",
        "compare",
        "report",
        "merge",
        "baseline",
        "devices",
        "peak",
        "project",
    ):
        assert f"  {command} " in err
    assert "the following arguments are required" not in err


def test_a_misspelt_command_offers_the_closest(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["compre", "a", "b"])
    assert exc.value.code == 2
    assert "unknown command 'compre'; did you mean compare?" in capsys.readouterr().err


def test_a_run_file_takes_the_flag_names(tmp_path) -> None:
    from bench.cli.run import config_from_args
    from bench.harness.config import build_config, load_toml

    cfg = tmp_path / "run.toml"
    cfg.write_text(
        'models = "dcgan"\ntime-budget = 0.5\nmin-psnr = 25\nbatch-sizes = [1, 4]\nmodel = ["m:f"]\n'
    )
    config = build_config(load_toml(cfg), {})
    assert config.time_budget_s == 0.5 and config.min_psnr_db == 25 and config.batch_sizes == (1, 4)
    assert config.models == ("dcgan",) and config.custom_models == ("m:f",)
    alone = tmp_path / "alone.toml"
    alone.write_text('model = ["m:f"]\n')
    assert build_config(load_toml(alone), {}).models == ()  # as --model alone: just your model
    legacy = tmp_path / "legacy.toml"
    legacy.write_text("time_budget_s = 0.5\n")  # field names, as run files of earlier versions wrote
    assert build_config(load_toml(legacy), {}).time_budget_s == 0.5
    from bench.cli import build_parser

    parser, _ = build_parser()
    args = parser.parse_args(["run", "--config", str(cfg), "--time-budget", "2"])
    assert config_from_args(args).time_budget_s == 2.0  # the flag wins over the file


def test_the_readme_run_file_is_complete_and_loads(tmp_path) -> None:
    from pathlib import Path

    from bench.harness.config import FLAG_FIELDS, build_config, load_toml

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### A run file", 1)[1].split("\n## ", 1)[0]
    blocks = [part.split("```", 1)[0] for part in section.split("```toml")[1:]]
    assert len(blocks) == 2, "a matrix run file and a serving run file"
    keys: set[str] = set()
    configs = []
    for i, block in enumerate(blocks):
        cfg = tmp_path / f"run{i}.toml"
        cfg.write_text(block)
        configs.append(build_config(load_toml(cfg), {}))  # each loads as it stands
        keys |= {
            line.split("=", 1)[0].strip()
            for line in block.splitlines()
            if "=" in line and not line.startswith("#")
        }
    assert keys == set(FLAG_FIELDS), "the README's run files name every option a run file takes"
    assert configs[0].models == ("dcgan", "unet") and configs[0].batch_sizes == (1, 8)
    assert configs[1].scenario == "server" and configs[1].soak_s == 600.0

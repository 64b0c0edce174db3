"""The generate and sample workloads on the command line: bad input is one line and exit 2; runs that work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.core.device import Device
from bench.harness.plan import CPU_LEFT_OUT, WORKLOAD_DEFAULTS, plan_cells, resolve_models, resolve_pipelines
from bench.results.store import read_cells, read_samples

FAST = [
    "--size",
    "tiny",
    "--time-budget",
    "0.1",
    "--min-samples",
    "2",
    "--warmup",
    "0",
    "--isolation",
    "none",
]
SHORT = ["--prompt-len", "8", "--new-tokens", "4", "--batch-sizes", "1"]


def assert_one_line_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], cwd: Path
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("genbench: error: "), err
    assert message in err, err
    assert err.count("\n") == 1, err
    assert not (cwd / "results").exists()  # nothing ran


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--new-tokens", "0"], "--new-tokens must be a positive number of tokens (got 0)"),
        (["run", "--prompt-len", "0"], "--prompt-len must be a positive number of tokens (got 0)"),
        (["run", "--steps", "0"], "--steps must be from 1 to 999 sampling steps (got 0)"),
        (
            ["run", "--prompt-len", "1000", "--new-tokens", "100", "--models", "gpt", "--size", "tiny"],
            "--prompt-len 1000 + --new-tokens 100 = 1100 tokens exceed gpt's context of 128",
        ),
        (["run", "--model", "hf:/nonexistent"], "hf:/nonexistent: no such folder"),
        (["run", "--guidance", "-1"], "--guidance must be a finite number >= 0"),
        (["run", "--min-token-match", "1.5"], "--min-token-match must be a share from 0 to 1"),
    ],
)
def test_bad_workload_input_is_one_line_and_exit_2(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(argv, message, capsys, tmp_path)


def test_an_hf_folder_without_config_json_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "empty-model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")  # weights alone are not a model
    assert_one_line_error(
        ["run", "--model", f"hf:{folder}"], f"hf:{folder}: the folder has no config.json", capsys, tmp_path
    )


def test_weights_of_the_wrong_shapes_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import save_file

    from reference_models import get_model

    monkeypatch.chdir(tmp_path)
    state = get_model("gpt").build("tiny").state_dict()
    tensors = {
        name: t.clone() for name, t in state.items() if name != "output.weight"
    }  # tied to the embedding
    tensors["layers.0.attention.wq.weight"] = torch.zeros(8, 8)  # (64, 64) in gpt tiny
    path = tmp_path / "wrong.safetensors"
    save_file(tensors, str(path))
    assert_one_line_error(
        ["run", "--models", "gpt", "--weights", str(path), "--pipelines", "fp32", *FAST, *SHORT],
        "layers.0.attention.wq.weight has shape (8, 8), the model wants (64, 64)",
        capsys,
        tmp_path,
    )


def test_pipelines_a_generate_model_cannot_run_are_skipped_rows_naming_the_workload(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        main(["run", "--models", "gpt", "--pipelines", "ort,channels_last", "--out", str(out), *FAST, *SHORT])
        == 0
    )
    cells = read_cells(out)
    assert list(cells["pipeline"]) == ["fp32", "ort", "channels_last"]
    assert list(cells["status"]) == ["ok", "skipped", "skipped"], cells["reason"].tolist()
    ort, channels_last = cells.iloc[1], cells.iloc[2]
    assert "generate workload runs torch models" in ort["reason"] and "onnx" in ort["reason"]
    assert "channels_last on a generate model" in channels_last["reason"]
    assert (cells["workload"] == "generate").all()


def test_the_default_matrix_gives_a_generate_model_its_own_defaults_only() -> None:
    device = Device("cpu")
    specs = resolve_models(("gpt", "dcgan"), ())
    pipelines = resolve_pipelines(None, device)
    cells = plan_cells(specs, "tiny", pipelines, (1,), defaults=True)
    gpt = [c.pipeline.text for c in cells if c.spec.name == "gpt"]
    dcgan = [c.pipeline.text for c in cells if c.spec.name == "dcgan"]
    assert gpt and gpt[0] == "fp32"
    assert set(gpt) <= set(WORKLOAD_DEFAULTS["generate"])
    cpu_defaults = [
        p.text
        for p in pipelines
        if p.text in WORKLOAD_DEFAULTS["generate"] and p.text not in CPU_LEFT_OUT["generate"]
    ]
    assert gpt == cpu_defaults and "compile" not in gpt  # compile: asked for by name on CPU (CPU_LEFT_OUT)
    on_gpu = plan_cells(specs, "tiny", pipelines, (1,), defaults=True, on_gpu=True)
    assert "compile" in [c.pipeline.text for c in on_gpu if c.spec.name == "gpt"]
    assert "channels_last" not in gpt and "ort" not in gpt
    assert "channels_last" in dcgan  # a forward model keeps the whole default matrix
    assert len(dcgan) > len(gpt)
    named = plan_cells(specs, "tiny", pipelines, (1,), defaults=False)  # asked for by name: every pipeline
    assert [c.pipeline.text for c in named if c.spec.name == "gpt"] == [p.text for p in pipelines]


def test_two_unguided_steps_run_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["run", "--models", "ldm", "--pipelines", "fp32", "--steps", "2", "--guidance", "1"]
    assert main([*argv, "--batch-sizes", "1", "--out", str(out), *FAST]) == 0
    cells = read_cells(out)
    row = cells.iloc[0]
    assert row["status"] == "ok", row["reason"]
    assert (row["workload"], row["steps"], row["guidance"], row["sampler"]) == ("sample", 2, 1.0, "ddim")
    assert "(unet batch 1)" in row["notes"]
    samples = read_samples(out)
    unet = samples[samples["phase"] == "unet"]
    assert len(unet) == 2 * row["n_samples"]

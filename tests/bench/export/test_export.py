"""`python -m bench export`: a measured cell comes out as files a deployment loads, and they reproduce the row.

One short run of the tiny DCGAN (fp32 and ort at batch 2, and tensorrt, a skipped row on a CPU) is
measured once for the module;
the exports are read back as a deployment would: the ONNX file in a fresh ONNX Runtime
session in another process, the ExportedProgram with torch.export.load, the Triton
configuration with the pbtxt parser.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch

import bench.cli as cli
from bench.cli import export as export_cli
from bench.core.artifact import TorchArtifact, present_inputs
from bench.export.build import CellRequest, build
from bench.export.signature import onnx_signature
from bench.export.triton import parse_pbtxt, problems
from bench.results.store import load_run

ROOT = Path(__file__).resolve().parents[3]
BATCH = 2


def main(argv: list[str]) -> int:
    assert export_cli in cli.GROUPS  # `python -m bench export` is a registered command
    return cli.main(argv)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "dcgan"
    code = main(
        ["run", "--models", "dcgan", "--size", "tiny", "--pipelines", "fp32,ort,tensorrt", "--batch-sizes", str(BATCH),
         "--time-budget", "0.1", "--min-samples", "3", "--warmup", "0", "--isolation", "none",
         "--device", "cpu", "--seed", "7", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    return out


def _row(run_dir: Path, pipeline: str) -> dict[str, object]:
    cells = load_run(run_dir).cells
    return cells[cells["pipeline"] == pipeline].iloc[0].to_dict()


@pytest.fixture(scope="module")
def ort_export(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "dcgan-ort"
    assert (
        main(["export", str(run_dir), "--cell", str(_row(run_dir, "ort")["cell_id"]), "--out", str(out)]) == 0
    )
    return out


# The fresh process builds its own fp32 reference from the spec and the run's seed, and runs the
# exported file with nothing of genbench's runtime: only onnxruntime and numpy.
FRESH_SESSION = """
import json, sys
import numpy as np, onnxruntime, torch
from reference_models import MODELS
from bench.measure.fidelity import compare_outputs
model, size, batch, seed, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
spec = MODELS[model]
inputs = spec.example_inputs(batch, size, seed)
with torch.inference_mode():
    reference = spec.build(size)(*inputs).float()
session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
feed = {i.name: inputs[int(i.name.split("_")[1])].numpy() for i in session.get_inputs()}
output = torch.from_numpy(session.run(None, feed)[0])
fidelity = compare_outputs(reference, output)
print(json.dumps({"max_abs_err": fidelity.max_abs_err, "psnr_db": fidelity.psnr_db, "shape": list(output.shape)}))
"""


def test_the_exported_onnx_reproduces_the_cell_in_a_fresh_process(run_dir: Path, ort_export: Path) -> None:
    row = _row(run_dir, "ort")
    model_file = ort_export / "model.onnx"
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_SESSION, "dcgan", "tiny", str(BATCH), "7", str(model_file)],
        cwd=ort_export, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["shape"][0] == BATCH
    recorded_err, recorded_psnr = float(row["max_abs_err"]), float(row["psnr_db"])
    assert got["max_abs_err"] <= 1.5 * recorded_err + 1e-6
    assert got["psnr_db"] >= recorded_psnr - 3.0
    manifest = json.loads((ort_export / "manifest.json").read_text())
    assert manifest["verification"]["ran"] and manifest["verification"]["within_recorded_error"] is True


def test_the_manifest_carries_the_signature_the_numbers_and_the_machine(
    run_dir: Path, ort_export: Path
) -> None:
    row = _row(run_dir, "ort")
    manifest = json.loads((ort_export / "manifest.json").read_text())
    assert manifest["model"]["name"] == "dcgan" and manifest["model"]["size"] == "tiny"
    assert manifest["pipeline"] == {"text": "ort", "passes": ["onnx", "ort"]}
    assert manifest["batch_size"] == BATCH and manifest["seed"] == 7
    assert manifest["artifact"]["format"] == "onnx" and manifest["artifact"]["provider"] == "cpu"
    (entry,) = manifest["artifact"]["files"]
    assert entry["path"] == "model.onnx" and entry["bytes"] == (ort_export / "model.onnx").stat().st_size
    signature = onnx_signature(ort_export / "model.onnx")
    assert manifest["inputs"] == [t.to_json() for t in signature.inputs]
    assert manifest["inputs"][0]["dtype"] == "float32" and manifest["inputs"][0]["shape"][0] == "batch"
    assert manifest["outputs"][0]["shape"][1:] == [3, 16, 16]
    assert manifest["measured"]["latency_ms_p50"] == pytest.approx(float(row["latency_ms_p50"]))
    assert manifest["measured"]["throughput_items_s"] == pytest.approx(float(row["throughput_items_s"]))
    assert manifest["fidelity"]["max_abs_err"] == pytest.approx(float(row["max_abs_err"]))
    assert manifest["source"]["cell_id"] == row["cell_id"]
    measured_on = manifest["hardware"]["measured_on"]
    assert measured_on["hw_id"] == row["hw_id"] == measured_on["fingerprint"]["hw_id"]
    assert manifest["hardware"]["same_machine"] is True and manifest["hardware"]["exported_on"] is None
    assert manifest["versions"]["export"]["packages"]["torch"] == torch.__version__


def test_the_triton_config_matches_the_onnx_model(ort_export: Path) -> None:
    manifest = json.loads((ort_export / "manifest.json").read_text())
    folder = ort_export / "triton" / manifest["triton"]["model"]
    config = parse_pbtxt((folder / "config.pbtxt").read_text())
    assert problems(config) == []
    assert config["name"] == folder.name
    assert config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == BATCH  # --max-batch's default: the cell's batch size
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 5000
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert (folder / "1" / "model.onnx").read_bytes() == (ort_export / "model.onnx").read_bytes()
    graph = onnx.load(str(folder / "1" / "model.onnx")).graph
    for field, values in (("input", graph.input), ("output", graph.output)):
        declared = {v.name: [d.dim_value or -1 for d in v.type.tensor_type.shape.dim] for v in values}
        assert {t["name"]: t["dims"] for t in config[field]} == {n: dims[1:] for n, dims in declared.items()}
        assert all(t["data_type"] == "TYPE_FP32" for t in config[field])


def test_max_batch_and_queue_delay_reach_the_config(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "e"
    cell = str(_row(run_dir, "ort")["cell_id"])
    assert main(["export", str(run_dir), "--cell", cell, "--out", str(out), "--max-batch", "16",
                 "--max-queue-delay-ms", "0.25"]) == 0  # fmt: skip
    (config_file,) = (out / "triton").glob("*/config.pbtxt")
    config = parse_pbtxt(config_file.read_text())
    assert config["max_batch_size"] == 16
    assert config["dynamic_batching"] == {
        "preferred_batch_size": [BATCH],
        "max_queue_delay_microseconds": 250,
    }


def test_a_torch_pipeline_exports_a_program_that_reloads_and_runs(tmp_path: Path) -> None:
    out = tmp_path / "cl"
    assert main(["export", "--model", "dcgan", "--size", "tiny", "--pipeline", "channels_last",
                 "--batch-size", "1", "--device", "cpu", "--out", str(out)]) == 0  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["artifact"]["format"] == "torch.export"
    assert manifest["inputs"][0]["shape"] == ["batch", 16, 1, 1]  # a batch-1 cell still exports a free batch
    assert manifest["measured"] is None and manifest["source"] == {"kind": "fresh"}
    assert manifest["triton"]["written"] is False and not (out / "triton").exists()
    program = torch.export.load(str(out / "model.pt2"))
    built = build(
        CellRequest("dcgan", "tiny", "channels_last", 1, "cpu", batch_sizes=(1,)), tmp_path / "work"
    )
    artifact = built.artifact
    assert isinstance(artifact, TorchArtifact) and artifact.channels_last
    for batch in (1, 3):
        inputs = present_inputs(built.spec.example_inputs(batch, "tiny", 0), "cpu", torch.float32, True)
        with torch.no_grad():
            expected = artifact.module(*inputs)
            got = program.module()(*inputs)
        torch.testing.assert_close(got, expected)


def test_a_model_torch_export_refuses_gets_the_reason_in_the_manifest(tmp_path: Path) -> None:
    out = tmp_path / "dd"
    code = main(["export", "--model", "tests.bench.export.unexportable:data_dependent", "--pipeline", "fp32",
                 "--batch-size", "2", "--device", "cpu", "--out", str(out)])  # fmt: skip
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    artifact = manifest["artifact"]
    assert artifact["exported"] is False and artifact["format"] is None and artifact["files"] == []
    assert artifact["reason"].startswith("torch.export failed:") and "\n" not in artifact["reason"]
    assert manifest["verification"]["ran"] is False
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]  # nothing faked beside it


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("genbench: error:")
    assert expected in err


def test_bad_input_is_one_line_and_exit_2(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = tmp_path / "new"
    _one_line_error(capsys, ["export", str(run_dir), "--cell", "99", "--out", str(new)], "has no cell 99")
    skipped = str(_row(run_dir, "tensorrt")["cell_id"])
    _one_line_error(capsys, ["export", str(run_dir), "--cell", skipped, "--out", str(new)], "is skipped")
    (tmp_path / "not-a-run").mkdir()
    _one_line_error(
        capsys, ["export", str(tmp_path / "not-a-run"), "--cell", "0", "--out", str(new)], "no cells.csv"
    )
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    _one_line_error(capsys, ["export", str(run_dir), "--cell", "1", "--out", str(busy)], "not empty")
    assert sorted(p.name for p in busy.iterdir()) == ["keep.txt"]
    _one_line_error(
        capsys, ["export", str(run_dir), "--cell", "1", "--model", "dcgan", "--out", str(new)], "not both"
    )
    _one_line_error(
        capsys, ["export", "--model", "dcgan", "--batch-size", "2", "--out", str(new)], "--pipeline"
    )
    _one_line_error(capsys, ["export", "--cell", "1", "--out", str(new)], "needs RUN")
    _one_line_error(
        capsys, ["export", "--model", "gpt", "--pipeline", "fp32", "--batch-size", "1", "--out", str(new)],
        "not supported for the generate workload",
    )  # fmt: skip
    _one_line_error(
        capsys, ["export", "--model", "dcgan", "--pipeline", "fp32", "--batch-size", "1", "--size", "huge",
                 "--device", "cpu", "--out", str(new)], "no size 'huge'",
    )  # fmt: skip
    _one_line_error(
        capsys, ["export", str(run_dir), "--cell", "1", "--out", str(new), "--max-batch", "0"], "--max-batch"
    )
    assert not new.exists()  # refused before anything was built or written

"""End-to-end runs of the matrix on tiny models, and what happens when cells fail."""

from __future__ import annotations

import math

import pytest
import torch

from bench.core.device import Device
from bench.harness.config import RunConfig
from bench.harness.runner import Runner, plan_cells
from bench.results.store import read_cells, read_samples
from bench.results.writer import ResultWriter
from optimizers.registry import parse_pipeline
from reference_models import get_model
from tests.conftest import FAST


@pytest.mark.parametrize("model", ["dcgan", "vae", "unet"])
def test_every_model_runs_fp32_bf16_channels_last(run_matrix, model: str) -> None:
    frame = run_matrix(models=(model,), pipelines=("fp32", "bf16", "channels_last"), batch_sizes=(2,))
    assert list(frame["status"]) == ["ok", "ok", "ok"], frame["reason"].tolist()
    assert list(frame["pipeline"]) == ["fp32", "bf16", "channels_last"]
    assert list(frame["precision"]) == ["fp32", "bf16", "fp32"]
    fp32 = frame.iloc[0]
    assert fp32["psnr_db"] == math.inf and fp32["max_abs_err"] == 0.0  # the reference itself
    bf16 = frame.iloc[1]
    assert 20 < bf16["psnr_db"] < 80 and bf16["cosine"] > 0.99
    assert frame.iloc[2]["psnr_db"] > 60  # same math, other memory order
    for row in frame.itertuples():
        assert row.n_samples >= 1  # the budget bounds sampling: on a busy machine one call can spend it
        assert row.latency_ms_min <= row.latency_ms_p50 <= row.latency_ms_p90 <= row.latency_ms_p99
        assert row.throughput_items_s == pytest.approx(2 / (row.latency_ms_p50 / 1e3))
        assert row.gflops_per_item > 0 and row.achieved_gflops > 0
        assert row.params > 0 and row.model_bytes > 0 and row.peak_host_rss_mb > 0
        assert row.build_s >= 0 and row.first_call_ms > 0
        assert row.device == "cpu" and row.runtime == "torch-eager"
    assert frame.iloc[1]["model_bytes"] == pytest.approx(frame.iloc[0]["model_bytes"] / 2, rel=0.05)


def test_every_raw_sample_is_kept(tmp_path) -> None:
    cfg = RunConfig(**{**FAST, "models": ("dcgan",), "pipelines": ("fp32",), "batch_sizes": (1, 2)})
    writer = ResultWriter(tmp_path)
    cells = plan_cells([get_model("dcgan")], "tiny", [parse_pipeline("fp32")], (1, 2))
    Runner(cfg, Device("cpu"), writer, "t").run(cells)
    cells_back = read_cells(tmp_path)
    samples = read_samples(tmp_path)
    for row in cells_back.itertuples():
        mine = samples[samples["cell_id"] == row.cell_id]["latency_ms"]
        assert len(mine) == row.n_samples
        assert mine.median() == pytest.approx(row.latency_ms_p50)


def test_a_failing_pass_is_an_error_row_and_the_run_goes_on(run_matrix, test_passes) -> None:
    frame = run_matrix(models=("dcgan",), pipelines=("fp32", "test-boom", "channels_last"), batch_sizes=(1,))
    assert list(frame["status"]) == ["ok", "error", "ok"]
    err = frame.iloc[1]
    assert err["reason"] == "RuntimeError: kaboom in a pass"
    assert "conftest.py" in err["notes"]  # where the failing pass lives
    assert math.isnan(err["latency_ms_p50"])


def test_running_out_of_memory_is_an_oom_row_and_the_next_cell_runs(run_matrix, test_passes) -> None:
    frame = run_matrix(models=("dcgan",), pipelines=("fp32", "test-hog", "channels_last"), batch_sizes=(1,))
    assert list(frame["status"]) == ["ok", "oom", "ok"]
    assert "allocate" in frame.iloc[1]["reason"]
    assert math.isnan(frame.iloc[1]["latency_ms_p50"])


def test_fp16_on_a_cpu_without_it_is_a_skipped_row(run_matrix) -> None:
    from bench.core.device import supports_dtype

    reason = supports_dtype(Device("cpu"), "fp16")
    if reason is None:
        pytest.skip("this CPU computes fp16 natively")
    frame = run_matrix(models=("dcgan",), pipelines=("fp32", "fp16"), batch_sizes=(1,))
    assert list(frame["status"]) == ["ok", "skipped"]
    assert "fp16" in frame.iloc[1]["reason"]


def test_an_interrupted_run_keeps_its_finished_rows(tmp_path, test_passes) -> None:
    cfg = RunConfig(**{**FAST, "models": ("dcgan",)})
    writer = ResultWriter(tmp_path)
    pipelines = [parse_pipeline(p) for p in ("fp32", "channels_last", "test-interrupt", "bf16")]
    cells = plan_cells([get_model("dcgan")], "tiny", pipelines, (1,))
    with pytest.raises(KeyboardInterrupt):
        Runner(cfg, Device("cpu"), writer, "t").run(cells)
    on_disk = read_cells(tmp_path)
    assert list(on_disk["pipeline"]) == ["fp32", "channels_last"]
    assert (on_disk["status"] == "ok").all()
    assert len(read_samples(tmp_path)) == on_disk["n_samples"].sum()


def test_the_reference_module_is_not_mutated_by_passes(tmp_path) -> None:

    cfg = RunConfig(**{**FAST, "models": ("dcgan",)})
    runner = Runner(cfg, Device("cpu"), ResultWriter(tmp_path), "t")
    pipelines = [parse_pipeline(p) for p in ("fp32", "bf16", "channels_last", "fp32")]
    cells = plan_cells([get_model("dcgan")], "tiny", pipelines, (1,))
    runner.run(cells)
    module = runner.executor.references.base_module(cells[0])
    assert all(p.dtype == torch.float32 for p in module.parameters())
    frame = runner.writer.frame()
    assert frame.iloc[3]["psnr_db"] == math.inf  # fp32 after bf16 and channels_last is still exact


def test_pct_of_peak_uses_the_cached_peak_of_the_rows_precision(run_matrix, tmp_path, monkeypatch) -> None:
    from bench.core.device import device_name
    from bench.hardware.peak import PeakResult, cache_key, write_cache

    monkeypatch.setenv("GENBENCH_CACHE_DIR", str(tmp_path / "cache"))
    frame = run_matrix(models=("dcgan",), pipelines=("fp32", "bf16"), batch_sizes=(2,))
    assert frame["pct_of_peak"].isna().all()  # no cached peak: nothing invented

    hw_id, threads = cache_key(Device("cpu"))
    write_cache(
        PeakResult(
            device="cpu", device_name=device_name(Device("cpu")), kind="cpu", measured_at="now",
            torch_version=torch.__version__, threads=threads, memory_bytes=1, flops={"fp32": 100e9, "bf16": 1e7},
            skipped={}, copy_bytes_s=1e10, hw_id=hw_id,
        )
    )  # fmt: skip
    frame = run_matrix(models=("dcgan",), pipelines=("fp32", "bf16"), batch_sizes=(2,))
    fp32, bf16 = frame.iloc[0], frame.iloc[1]
    assert fp32["pct_of_peak"] == pytest.approx(fp32["achieved_gflops"] / 100 * 100)
    assert bf16["pct_of_peak"] == pytest.approx(bf16["achieved_gflops"] / 0.01 * 100)
    # bf16 above its 0.01 GFLOP/s "peak": the row says the peak is the suspect, not the machine
    assert bf16["pct_of_peak"] > 100 and "is above the measured peak (bf16" in bf16["notes"]
    assert fp32["pct_of_peak"] > 100 or "above the measured peak" not in fp32["notes"]


def test_default_matrix_leaves_out_emulated_precisions_but_explicit_requests_run() -> None:
    from bench.core.device import emulated_dtype, supports_dtype
    from bench.harness.plan import resolve_pipelines

    cpu = Device("cpu")
    defaults = [p.text for p in resolve_pipelines(None, cpu)]
    assert defaults[0] == "fp32" and "channels_last" in defaults
    assert ("bf16" in defaults) == (emulated_dtype(cpu, "bf16") is None)
    assert ("fp16" in defaults) == (supports_dtype(cpu, "fp16") is None)
    explicit = [p.text for p in resolve_pipelines(("bf16",), cpu)]
    assert explicit == ["fp32", "bf16"]


def test_an_onnx_pipeline_on_a_gpu_without_cuda_provider_is_skipped_not_failed() -> None:
    pytest.importorskip("onnxruntime")
    import onnxruntime

    from bench.harness.plan import skip_reason

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    reason = skip_reason(parse_pipeline("int8"), Device("cuda", 0))
    assert reason is not None and reason.startswith("runtime: ") and "CUDAExecutionProvider" in reason
    assert skip_reason(parse_pipeline("int8"), Device("cpu")) is None


def test_a_failing_clean_up_is_noted_and_the_run_goes_on(run_matrix, test_passes, monkeypatch) -> None:
    import bench.harness.executor as executor

    def broken_collect() -> int:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(executor.gc, "collect", broken_collect)
    frame = run_matrix(models=("dcgan",), pipelines=("fp32", "test-hog", "channels_last"), batch_sizes=(1,))
    assert list(frame["status"]) == ["ok", "oom", "ok"]  # the oom cell's clean-up raised; the run went on
    assert "clean-up after the cell failed: RuntimeError: CUDA error" in frame.iloc[1]["notes"]


def test_offline_skips_only_batches_larger_than_the_one_that_did_not_fit() -> None:
    from bench.harness.config import build_config
    from bench.harness.offline import OfflineSearch
    from bench.harness.plan import Cell
    from optimizers.registry import parse_pipeline
    from reference_models import MODELS

    assert build_config({}, {"scenario": "offline", "batch_sizes": "16,1,4,2"}).batch_sizes == (1, 2, 4, 16)
    search = OfflineSearch()
    cells = {
        b: Cell(i, MODELS["dcgan"], "tiny", parse_pipeline("fp32"), b) for i, b in enumerate((1, 2, 4, 16))
    }
    search.observe(cells[4], {"status": "oom"})
    assert search.skip_reason(cells[2]) is None and search.skip_reason(cells[1]) is None
    assert "did not fit" in (search.skip_reason(cells[16]) or "")

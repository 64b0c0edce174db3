"""report: one self-contained HTML page with devices side by side, the same tables as Markdown."""

from __future__ import annotations

import base64
import math
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.analysis.report import build_report, device_labels, pareto_front
from bench.cli import main
from bench.render.markdown import report_markdown
from bench.results.store import load_run
from tests.bench.analysis.test_compare import cell, lognormal, make_run


def _env(host: str, run_id: str, gpu: str | None = None) -> dict[str, Any]:
    return {
        "run_id": run_id, "hostname": host, "device": "cuda" if gpu else "cpu", "python": "3.11.7",
        "captured_at": "2026-11-23T12:00:00+00:00", "git_sha": "0123456789abcdef",
        "packages": {"torch": "2.13.0"}, "cpu": {"model": "Test CPU", "logical_cores": 8, "torch_threads": 8},
        "gpus": [{"index": 0, "name": gpu}] if gpu else [],
    }  # fmt: skip


def cpu_and_gpu_runs(tmp_path: Path) -> tuple[Path, Path]:
    """A CPU run (one cell skipped) and a GPU run (TensorRT, energy, one cell failed) of dcgan tiny."""
    cpu_rows, gpu_rows, cpu_samples, gpu_samples = [], [], {}, {}
    for batch in (1, 4):
        for pipeline, precision, psnr in (("fp32", "fp32", math.inf), ("bf16", "bf16", 56.3)):
            cid = len(cpu_rows)
            cpu_rows.append(
                cell(
                    cid,
                    run_id="cpu-run",
                    batch_size=batch,
                    pipeline=pipeline,
                    precision=precision,
                    psnr_db=psnr,
                )
            )
            cpu_samples[cid] = lognormal(30, 2.0 * batch * (0.6 if pipeline == "bf16" else 1), 0.05, cid)
        cpu_rows.append(cell(len(cpu_rows), run_id="cpu-run", batch_size=batch, pipeline="fp16", status="skipped",
                             reason="fp16: needs a CUDA device"))  # fmt: skip
        for pipeline, runtime, precision, psnr in (
            ("fp32", "torch-eager", "fp32", math.inf),
            ("fp16", "torch-eager", "fp16", 61.0),
            ("onnx+tensorrt:fp16", "tensorrt", "fp16", 58.5),
        ):
            cid = len(gpu_rows)
            gpu_rows.append(
                cell(
                    cid,
                    run_id="gpu-run",
                    host="gpu-host",
                    device="cuda",
                    device_name="Test GPU",
                    batch_size=batch,
                    pipeline=pipeline,
                    runtime=runtime,
                    precision=precision,
                    psnr_db=psnr,
                    peak_device_mem_mb=900.0,
                    energy_j_per_item=0.02 * (0.5 if "tensorrt" in pipeline else 1),
                )  # fmt: skip
            )
            gpu_samples[cid] = lognormal(30, 0.2 * (0.4 if "fp16" in pipeline else 1), 0.05, 100 + cid)
    gpu_rows.append(cell(len(gpu_rows), run_id="gpu-run", host="gpu-host", device="cuda", device_name="Test GPU",
                         pipeline="compile", status="error", reason="RuntimeError: <inductor> failed & gave up"))  # fmt: skip
    cpu = make_run(tmp_path / "cpu", cpu_rows, cpu_samples, _env("cpu-host", "cpu-run"))
    gpu = make_run(tmp_path / "gpu", gpu_rows, gpu_samples, _env("gpu-host", "gpu-run", gpu="Test GPU"))
    return cpu, gpu


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables = 0
        self.images: list[str] = []
        self.links: list[str] = []
        self.headers: list[str] = []
        self._in_th = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "table":
            self.tables += 1
        if tag == "img":
            self.images.append(values.get("src") or "")
        for attr in ("src", "href"):
            if values.get(attr):
                self.links.append(values[attr] or "")
        self._in_th = tag == "th"

    def handle_data(self, data: str) -> None:
        if self._in_th:
            self.headers.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "th":
            self._in_th = False


def test_html_report_holds_tables_and_embedded_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    cpu, gpu = cpu_and_gpu_runs(tmp_path)
    html_path, md_path = tmp_path / "report.html", tmp_path / "report.md"
    assert main(["report", str(cpu), str(gpu), "--html", str(html_path), "--markdown", str(md_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    text = html_path.read_text()
    tags = _Tags()
    tags.feed(text)
    # tables: throughput + details per model, failures, environment
    assert tags.tables == 4
    assert {"Test CPU image/s", "Test CPU x fp32", "Test GPU image/s", "Test GPU x fp32"} <= set(tags.headers)
    # images: throughput, latency, speed/quality, memory, energy; all embedded PNGs
    assert len(tags.images) == 5
    for src in tags.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(link.startswith(("data:", "#")) for link in tags.links), tags.links  # nothing fetched
    for expected in (
        "Throughput and speedup over fp32 eager on the same device", "Latency, memory, fidelity and energy per cell",
        "Cells that did not run", '<h2 id="environment">Environment</h2>', "fp16: needs a CUDA device",
        "RuntimeError: &lt;inductor&gt; failed &amp; gave up", "gpu-host", "cpu-host", "exact", "onnx+tensorrt:fp16",
    ):  # fmt: skip
        assert expected in text, expected
    md = md_path.read_text()
    assert "data:image" not in md and "<img" not in md
    for title in (
        "Throughput and speedup",
        "Latency, memory, fidelity",
        "Cells that did not run",
        "Environment",
    ):
        assert title in md


def test_speedup_is_against_fp32_on_the_same_device(tmp_path: Path) -> None:
    cpu, gpu = cpu_and_gpu_runs(tmp_path)
    report = build_report([load_run(cpu), load_run(gpu)])
    cells = report.cells.set_index(["device_label", "pipeline", "batch_size"])
    assert cells.loc[("Test GPU", "fp32", 4), "speedup"] == pytest.approx(1.0)
    assert cells.loc[("Test GPU", "fp16", 4), "speedup"] == pytest.approx(2.5, rel=0.1)
    assert cells.loc[("Test CPU", "bf16", 1), "speedup"] == pytest.approx(1 / 0.6, rel=0.1)
    assert math.isnan(cells.loc[("Test CPU", "fp16", 1), "speedup"])
    md = report_markdown(report)
    assert "| fp16 | 1 | skipped |" in md  # the CPU column says why there is no number
    assert (  # the reason as text: Markdown renders HTML, so < and & are entities (bench.render.markdown)
        "| dcgan | tiny | Test GPU | compile | 1 | error | RuntimeError: &lt;inductor> failed &amp; gave up |"
        in md
    )


def test_device_labels_tell_identical_devices_apart() -> None:
    cells = pd.DataFrame(
        {
            "device_name": ["CPU X", "CPU X", "GPU Y", "GPU Y"],
            "device": ["cpu", "cpu", "cuda:0", "cuda:1"],
            "host": ["a", "b", "c", "c"],
            "run_id": ["r1", "r2", "r3", "r3"],
        }
    )
    assert device_labels(cells).tolist() == ["CPU X @ a", "CPU X @ b", "GPU Y (cuda:0)", "GPU Y (cuda:1)"]


def test_pareto_front_keeps_undominated_points() -> None:
    points = [(100.0, 10.0), (60.0, 30.0), (50.0, 20.0), (40.0, 50.0), (30.0, 40.0)]
    assert pareto_front(points) == [(100.0, 10.0), (60.0, 30.0), (40.0, 50.0)]


def test_report_needs_an_output_and_a_readable_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cpu, _ = cpu_and_gpu_runs(tmp_path)
    assert main(["report", str(cpu)]) == 2
    assert "--html FILE and/or --markdown FILE" in capsys.readouterr().err
    assert main(["report", str(cpu), str(tmp_path / "missing"), "--markdown", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_plots_are_deterministic_and_survive_a_crowded_speed_quality_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from bench.render.plots import add_figures, pareto_figure

    cpu, gpu = cpu_and_gpu_runs(tmp_path)
    first, second = (build_report([load_run(cpu), load_run(gpu)]) for _ in range(2))
    add_figures(first)
    add_figures(second)
    assert [png for _, png in first.sections[0].figures] == [png for _, png in second.sections[0].figures]
    # twelve pipelines on three devices within a few dB and percent of each other: labels become numbers
    crowded = pd.DataFrame(
        [
            {"status": "ok", "device_label": f"device {d}", "pipeline": f"pipeline-{p}",
             "psnr_db": 130.0 + p * 0.3 + d, "throughput_items_s": 100.0 * (1 + 0.02 * p + 0.05 * d)}
            for d in range(3) for p in range(12)
        ]
    )  # fmt: skip
    png = pareto_figure(crowded, "image")
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n" and png == pareto_figure(crowded, "image")


def test_missing_matplotlib_says_how_to_install_it_for_this_checkout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.core.optional

    cpu, _ = cpu_and_gpu_runs(tmp_path)
    monkeypatch.setattr(bench.core.optional, "installed", lambda module: module != "matplotlib")
    assert main(["report", str(cpu), "--html", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matplotlib is not installed" in err
    assert 'pip install -e ".[report]"' in err  # the tests run from a git checkout
    assert not (tmp_path / "r.html").exists()


def test_contended_cells_are_marked_like_noisy_ones_and_counted(tmp_path: Path) -> None:
    rows = [
        cell(0, run_id="r", noisy=True),
        cell(1, run_id="r", batch_size=4, contended=True),
        cell(2, run_id="r", pipeline="bf16", precision="bf16", noisy=True, contended=True),
        cell(3, run_id="r", pipeline="compile", contended=None),  # an older run: not measured
    ]
    samples = {i: lognormal(20, 5.0, 0.02, i) for i in range(4)}
    report = build_report([load_run(make_run(tmp_path / "r", rows, samples, _env("h", "r")))])
    statuses = {(r[1], r[2]): r[-1] for r in report.sections[0].tables[1].rows}
    assert statuses[("fp32", "1")] == "ok (noisy)"
    assert statuses[("fp32", "4")] == "ok (contended)"
    assert statuses[("bf16", "1")] == "ok (noisy, contended)"
    assert statuses[("compile", "1")] == "ok"
    assert report.contended == 2
    assert report.contended_note().startswith("2 of 4 cells were contended")
    md = report_markdown(report)
    assert "2 of 4 cells were contended" in md and "| ok (contended) |" in md


@pytest.mark.parametrize("status", ["crashed", "timeout"])
def test_crashed_and_timeout_cells_are_listed_like_error(tmp_path: Path, status: str) -> None:
    rows = [
        cell(0, run_id="r"),
        cell(1, run_id="r", pipeline="compile", status=status, reason=f"worker {status}"),
        cell(2, run_id="r", pipeline="int8", status="error", reason="boom"),
    ]
    run = load_run(make_run(tmp_path / "r", rows, {0: lognormal(20, 5.0, 0.02, 0)}, _env("h", "r")))
    report = build_report([run])
    failures = {r[3]: (r[5], r[6]) for r in report.failures.rows}
    assert failures == {"compile": (status, f"worker {status}"), "int8": ("error", "boom")}
    throughput = {r[0]: r[2] for r in report.sections[0].tables[0].rows}
    assert throughput["compile"] == status and throughput["int8"] == "error"


def _workload_runs(tmp_path: Path) -> Path:
    """One run holding a generate model (gpt, batches 1 and 4), a sample model (ldm) and a forward one (dcgan)."""
    rows: list[dict[str, Any]] = []
    for batch in (1, 4):
        for pipeline, tokens_s, ttft in (("fp32", 400.0 * batch, 20.0), ("bf16", 600.0 * batch, 15.0)):
            rows.append(
                cell(len(rows), run_id="w", model="gpt", family="transformer", item="token", workload="generate",
                     pipeline=pipeline, precision=pipeline, batch_size=batch, psnr_db=None, throughput_items_s=1.0,
                     output_tokens_s=tokens_s, ttft_ms=ttft * batch, tpot_ms=2.5, itl_ms_p99=3.5,
                     decode_gb_s=20.0, pct_of_bandwidth=40.0, kv_cache_mb=6.0, token_match=0.97, prompt_len=64,
                     new_tokens=32, kv_cache="dynamic")
            )  # fmt: skip
    for batch in (1, 2):
        for pipeline, s_per_image in (("fp32", 2.0), ("bf16", 0.8)):
            rows.append(
                cell(len(rows), run_id="w", model="ldm", family="diffusion", workload="sample", pipeline=pipeline,
                     precision=pipeline, batch_size=batch, throughput_items_s=1.0, s_per_image=s_per_image,
                     images_s=1 / s_per_image, it_s=20 / (s_per_image * batch), steps=20, guidance=7.5,
                     sampler="euler", unet_step_ms=45.0 * s_per_image * batch, vae_decode_ms=50.0 * s_per_image * batch,
                     sampler_overhead_ms=60.0 * s_per_image * batch, psnr_db=44.0)
            )  # fmt: skip
    rows.append(cell(len(rows), run_id="w", model="ldm", family="diffusion", workload="sample", pipeline="compile",
                     status="error", reason="boom"))  # fmt: skip
    rows.append(cell(len(rows), run_id="w"))  # dcgan, forward
    return make_run(tmp_path / "w", rows, {}, _env("h", "w"))


def test_generate_and_sample_sections_show_their_workload_columns(tmp_path: Path) -> None:
    from bench.analysis.report import sampling_split

    report = build_report([load_run(_workload_runs(tmp_path))])
    gpt, ldm, dcgan = report.sections
    assert (gpt.workload, ldm.workload, dcgan.workload) == ("generate", "sample", "forward")
    (generation,) = gpt.tables
    assert generation.headers[3:6] == ["output tokens/s", "speedup", "TTFT ms"]
    rows = {(r[1], r[2]): r for r in generation.rows}
    assert rows[("bf16", "4")][3:13] == [
        "2,400.0", "1.50x", "60.00", "2.50", "3.50", "20", "40.0%", "6", "97.0%", "ok"
    ]  # fmt: skip
    assert any("prompt 64 + 32 new tokens, dynamic KV cache" in note for note in gpt.notes)
    (sampling,) = ldm.tables
    assert sampling.headers[3:6] == ["s/image", "images/s", "speedup"]
    rows = {(r[1], r[2]): r for r in sampling.rows}
    assert rows[("bf16", "2")][3:6] == ["0.800", "1.25", "2.50x"]  # fp32's 2.0 s/image over 0.8
    assert rows[("compile", "1")][-1] == "error"
    assert any("20 euler steps, guidance 7.5" in note for note in ldm.notes)
    # the split of s/image into UNet steps, VAE and sampler sums to s/image, in the parts' proportions
    cells = ldm.cells[ldm.cells["status"] == "ok"]
    for row in cells.itertuples(index=False):
        unet, vae, sampler = sampling_split(row)
        assert unet + vae + sampler == pytest.approx(row.s_per_image)
        assert unet / vae == pytest.approx(45.0 * 20 / 50.0) and vae / sampler == pytest.approx(50.0 / 60.0)
    # a forward model's section is as it was
    assert [t.title for t in dcgan.tables] == [
        "Throughput and speedup over fp32 eager on the same device", "Latency, memory, fidelity and energy per cell",
    ]  # fmt: skip
    md = report_markdown(report)
    assert (
        "| Test CPU | bf16 | 4 | 2,400.0 | 1.50x |" in md
        and "| Test CPU | bf16 | 2 | 0.800 | 1.25 | 2.50x |" in md
    )


def test_html_report_draws_the_generation_and_sampling_figures(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from bench.render.html import to_html
    from bench.render.plots import add_figures, generation_figure, sampling_figure

    report = build_report([load_run(_workload_runs(tmp_path))])
    add_figures(report)
    gpt, ldm, dcgan = report.sections
    assert [caption for caption, _ in gpt.figures] == [
        "gpt output tokens/s and TTFT against batch size", "gpt peak memory"
    ]  # fmt: skip
    assert [caption for caption, _ in ldm.figures] == [
        "ldm seconds per image: UNet, VAE and sampler", "ldm peak memory"
    ]  # fmt: skip
    assert len(dcgan.figures) == 4  # throughput, latency, speed/quality, memory: as before
    tags = _Tags()
    tags.feed(to_html(report))
    assert len(tags.images) == 8 and all(src.startswith("data:image/png;base64,") for src in tags.images)
    assert gpt.figures[0][1] == generation_figure(gpt.cells)  # deterministic
    assert ldm.figures[0][1] == sampling_figure(ldm.cells)
    failed_only = ldm.cells[ldm.cells["status"] != "ok"]
    assert sampling_figure(failed_only) is None and generation_figure(failed_only) is None

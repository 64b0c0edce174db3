"""The serving scenarios on the command line: server, offline, soak with a Prometheus scrape, and bad input."""

from __future__ import annotations

import math
import socket
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.results.store import load_run
from bench.serving.stats import nearest_rank

FAST = ["--size", "tiny", "--isolation", "none", "--models", "dcgan", "--pipelines", "fp32"]


def _one_line_error(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("genbench: error: ") and message in err, err
    assert err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenario", "server"], "needs --target-qps"),
        (["--scenario", "server", "--target-qps", "0"], "positive request rates"),
        (["--scenario", "server", "--target-qps", "-3"], "positive request rates"),
        (["--scenario", "server", "--target-qps", "fast"], "must be numbers"),
        (["--scenario", "server", "--target-qps", "5", "--duration", "0"], "--duration must be a positive"),
        (["--scenario", "server", "--target-qps", "5", "--duration", "-1"], "--duration must be a positive"),
        (["--slo-p99-ms", "100"], "--slo-p99-ms needs --scenario server"),
        (["--scenario", "offline", "--slo-p99-ms", "100"], "--slo-p99-ms needs --scenario server"),
        (["--scenario", "server", "--find-peak"], "--find-peak needs --slo-p99-ms"),
        (["--find-peak", "--slo-p99-ms", "10"], "--find-peak needs --scenario server"),
        (["--target-qps", "5"], "--target-qps needs --scenario server"),
        (["--scenario", "server", "--target-qps", "5", "--batch-sizes", "1,8"], "--max-batch"),
        (["--scenario", "server", "--target-qps", "5", "--max-batch", "0"], "--max-batch must be"),
        (["--scenario", "server", "--target-qps", "1e9"], "beyond what the load generator"),
        (["--soak", "ten minutes"], "--soak takes a duration"),
        (["--soak", "0"], "--soak must be a positive"),
        (["--scenario", "offline", "--soak", "10"], "not offline"),
        (["--metrics-port", "9000"], "--metrics-port serves"),
        (["--soak", "10", "--metrics-port", "70000"], "TCP port"),
    ],
)
def test_bad_serving_input_is_one_line(argv: list[str], message: str, capsys, tmp_path: Path) -> None:
    _one_line_error(["run", *FAST, "--out", str(tmp_path / "r"), *argv], message, capsys)
    assert not (tmp_path / "r").exists()


def test_a_server_run_charges_latency_from_scheduled_arrival(tmp_path: Path) -> None:
    out = tmp_path / "r"
    argv = ["run", *FAST, "--scenario", "server", "--target-qps", "40,200", "--duration", "1.5",
            "--max-batch", "4", "--slo-p99-ms", "1000", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    run = load_run(out)
    cells = run.cells
    assert list(cells["scenario"]) == ["server", "server"]
    assert list(cells["target_qps"]) == [40.0, 200.0]
    assert list(cells["batch_size"]) == [4, 4]
    requests, probes = run.table("requests.csv"), run.table("probes.csv")
    for row in cells.itertuples():
        mine = requests[(requests["cell_id"] == row.cell_id) & ~requests["warmup"]]
        latency = ((mine["end_s"] - mine["arrival_s"]) * 1e3).fillna(math.inf).to_numpy()
        # the row's percentiles are its requests' own, counted from the scheduled arrival
        assert row.latency_ms_p99 == pytest.approx(nearest_rank(latency, 99))
        assert row.n_samples == len(mine) > 10
        assert (mine["batch_size"] <= 4).all() and (mine["issued_s"] >= mine["arrival_s"]).all()
        assert row.goodput_qps <= row.achieved_qps * 1.01 + 1e-9
        assert row.slo_p99_ms == 1000.0 and row.status == "ok"
        assert len(probes[probes["cell_id"] == row.cell_id]) == 1
    assert cells["achieved_qps"].iloc[0] == pytest.approx(40.0, rel=0.5)


def test_offline_reports_the_best_batch_on_every_row(tmp_path: Path) -> None:
    out = tmp_path / "r"
    argv = ["run", *FAST, "--scenario", "offline", "--batch-sizes", "1,2,4", "--time-budget", "0.1",
            "--min-samples", "3", "--warmup", "0", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    cells = load_run(out).cells
    assert list(cells["scenario"]) == ["offline"] * 3
    best = cells.loc[cells["throughput_items_s"].idxmax(), "batch_size"]
    assert set(cells["best_batch_size"]) == {best}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_soak_records_a_time_series_and_serves_prometheus_metrics(tmp_path: Path) -> None:
    """A real HTTP scrape of the worker's endpoint while the soak runs."""
    port = _free_port()
    out = tmp_path / "r"
    scraped: list[str] = []

    def scrape() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not scraped:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as reply:
                    text = reply.read().decode()
                if "genbench_requests_total" in text and "genbench_requests_total{" in text:
                    count = [ln for ln in text.splitlines() if ln.startswith("genbench_requests_total{")]
                    if count and float(count[0].split()[-1]) > 0:
                        scraped.append(text)
            except OSError:
                pass
            time.sleep(0.2)

    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()
    argv = ["run", *FAST, "--scenario", "server", "--target-qps", "50", "--soak", "4", "--max-batch", "2",
            "--metrics-port", str(port), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    scraper.join(timeout=5)
    assert scraped, "the endpoint never served a completed request"
    assert "genbench_request_latency_seconds_bucket" in scraped[0]
    run = load_run(out)
    series = run.table("timeseries.csv")
    assert len(series) >= 3 and np.all(np.diff(series["t_s"].to_numpy()) > 0)
    assert series["host_rss_mb"].gt(0).all() and series["gpu_power_w"].isna().all()  # CPU: no GPU values
    verdicts = run.table("soak.csv")
    assert set(verdicts["check"]) >= {"throughput_drift", "rss_growth", "throttling"}
    assert (
        run.cells["soak_s"].iloc[0] == 4.0
        and "throttling: not_measured" in run.cells["soak_verdicts"].iloc[0]
    )


def test_a_generate_model_is_served_with_ttft_and_tpot(tmp_path: Path) -> None:
    out = tmp_path / "r"
    argv = ["run", "--size", "tiny", "--isolation", "none", "--models", "gpt", "--pipelines", "fp32",
            "--scenario", "server", "--target-qps", "10", "--duration", "1.5", "--max-batch", "2",
            "--prompt-len", "8", "--new-tokens", "4", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    run = load_run(out)
    row = run.cells.iloc[0]
    assert row["status"] == "ok" and row["workload"] == "generate"
    assert 0 < row["ttft_ms"] <= row["latency_ms_p50"] * 1.0001 + 1e-6
    assert row["tpot_ms"] > 0 and row["new_tokens"] == 4
    requests = run.table("requests.csv")
    done = requests[requests["end_s"].notna()]
    assert (done["first_token_s"] <= done["end_s"]).all() and (done["first_token_s"] >= done["start_s"]).all()


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1):
            return True
    except OSError:
        return False


def test_sigterm_ends_the_run_and_its_worker(tmp_path: Path) -> None:
    """kill (SIGTERM) on the run ends the cell's worker too: its Prometheus port is freed, not left serving."""
    import signal
    import subprocess
    import sys

    port = _free_port()
    argv = [sys.executable, "-m", "bench", "run", "--size", "tiny", "--models", "dcgan", "--pipelines", "fp32",
            "--scenario", "server", "--target-qps", "20", "--duration", "60", "--metrics-port", str(port),
            "--out", str(tmp_path / "r")]  # fmt: skip
    run = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _answers(port) and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.2)
        assert _answers(port), "the worker never served its metrics"
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 130
        deadline = time.monotonic() + 15
        while _answers(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _answers(port), "the worker outlived the run"
    finally:
        if run.poll() is None:
            run.kill()

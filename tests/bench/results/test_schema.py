import json
import math

import pandas as pd
import pytest

from bench.results.schema import CELL_COLUMNS, cells_frame
from bench.results.store import read_cells, read_samples
from bench.results.writer import ResultWriter


def _row(cell_id: int, status: str = "ok", **extra: object) -> dict[str, object]:
    row: dict[str, object] = {
        "run_id": "r", "cell_id": cell_id, "model": "dcgan", "pipeline": "fp32", "batch_size": 4,
        "status": status, "latency_ms_p50": 1.5, "noisy": False, "psnr_db": math.inf, "fidelity_ok": True,
    }  # fmt: skip
    row.update(extra)
    return row


def test_frame_has_every_column_in_order_with_schema_dtypes() -> None:
    frame = cells_frame([_row(0), _row(1, status="skipped", reason="no fp16")])
    assert list(frame.columns) == list(CELL_COLUMNS)
    for col, dtype in CELL_COLUMNS.items():
        assert str(frame[col].dtype) == dtype, col
    assert pd.isna(frame.loc[1, "n_samples"])


def test_unknown_column_and_bad_status_are_rejected() -> None:
    with pytest.raises(KeyError):
        cells_frame([_row(0, latency_s=1.0)])
    with pytest.raises(ValueError, match="status"):
        cells_frame([_row(0, status="fine")])


def test_writer_round_trips_csv_parquet_json_and_samples(tmp_path) -> None:
    writer = ResultWriter(tmp_path)
    writer.write_env({"hostname": "h"})
    writer.add(_row(0), [1.0, 2.0, 3.0])
    writer.add(_row(1, status="error", reason="boom", latency_ms_p50=None, psnr_db=None), [])
    back = read_cells(tmp_path)
    pd.testing.assert_frame_equal(back, writer.frame())
    parquet = pd.read_parquet(tmp_path / "cells.parquet")
    assert list(parquet.columns) == list(CELL_COLUMNS)
    assert len(parquet) == 2
    records = json.loads((tmp_path / "cells.json").read_text())
    assert records[0]["psnr_db"] == "inf" and records[1]["reason"] == "boom"
    samples = read_samples(tmp_path)
    assert samples["latency_ms"].tolist() == [1.0, 2.0, 3.0]
    assert set(samples["cell_id"]) == {0}
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["schema_version"] >= 1 and env["hostname"] == "h"
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


def test_read_cells_errors_are_one_line(tmp_path) -> None:
    with pytest.raises(ValueError, match="no cells.csv"):
        read_cells(tmp_path)
    (tmp_path / "cells.csv").write_text("model,pipeline\nunet,fp32\n")
    with pytest.raises(ValueError, match="another schema"):
        read_cells(tmp_path)


def test_committed_result_folders_match_the_current_schema() -> None:
    """A schema change must bring the committed runs and baselines along, or compare/report/nightly break."""
    import subprocess
    from pathlib import Path

    from bench.results.store import load_run, read_table

    repo = Path(__file__).resolve().parents[3]
    listed = subprocess.run(
        ["git", "ls-files", "results"], cwd=repo, capture_output=True, text=True, check=False
    ).stdout.split()
    if not listed:
        pytest.skip("not a git checkout: committed result folders cannot be told from local runs")
    folders = [repo / Path(p).parent for p in listed if p.endswith("/cells.csv")]
    assert folders, "no committed result folders found"
    for folder in folders:
        frame = read_cells(folder)
        # a serving run's raw data is its requests (requests.csv), not timed calls
        raw = len(read_samples(folder)) > 0 or len(read_table(folder, "requests.csv")) > 0
        assert len(frame) > 0 and raw, folder
        run = load_run(folder)  # what compare, report and the nightly baseline check read: env.json too
        assert len(run.cells) == len(frame), folder

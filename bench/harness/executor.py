"""Where a cell runs: the seam between the loop and the measurement.

``CellExecutor`` is the one thing the loop (``bench.harness.runner``) asks of a way
of running cells: turn a planned ``Cell`` into a ``CellResult``, never raising for
a cell that failed (only Ctrl-C passes through; a model's sys.exit() is an error
row). ``InProcessExecutor`` runs the cell in this process (``--isolation none``, and
the one cell of each worker process); ``bench.harness.isolation.ProcessExecutor``
runs each cell in a worker process, so a crash or a hang ends one cell, not the
run; a remote one (a Ray task on another machine) implements the same protocol.
Everything they need to rebuild the cell is in the cell's plan (model spec name and
size, pipeline text, batch size, repeat) and the run's ``RunConfig``, and what they
send back is plain data.
"""

from __future__ import annotations

import datetime as dt
import gc
import math
import shutil
import socket
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import torch

from bench.core.device import Device, device_name
from bench.core.text import one_line
from bench.hardware.peak import usable_peak
from bench.harness.cell import CellSettings, Instruments, measure_cell
from bench.harness.config import RunConfig
from bench.harness.generate import measure_generate_cell
from bench.harness.outcome import outcome_of, skipped
from bench.harness.plan import Cell, skip_reason
from bench.harness.reference import References
from bench.harness.result import CellIdentity, CellOutcome, CellResult, PhaseSample, Tables
from bench.harness.sample import measure_sample_cell
from bench.harness.serve import measure_server_cell
from bench.measure.clocks import timer_for
from bench.measure.environment import git_sha
from bench.measure.fingerprint import hardware_fingerprint
from bench.measure.memory import release_device_cache
from bench.measure.nvml import open_gpu
from bench.measure.sampling import SamplingPolicy

#: how a cell of each workload (ModelSpec.workload) is measured
MEASURES = {"forward": measure_cell, "generate": measure_generate_cell, "sample": measure_sample_cell}


class CellRecord(Protocol):
    """What the loop needs of a finished cell: a ``CellResult``, or a row a worker process reported."""

    samples_ms: tuple[float, ...]
    phase_samples: tuple[PhaseSample, ...]
    tables: Tables

    @property
    def status(self) -> str: ...

    def row(self) -> dict[str, Any]: ...


class CellExecutor(Protocol):
    def run(self, cell: Cell) -> CellRecord: ...


class Identities:
    """Makes each cell's ``CellIdentity``: the run, this machine (name, ``hw_id``), the thread count."""

    def __init__(self, run_id: str, device: Device, isolation: str, scenario: str = "single-stream") -> None:
        self.run_id = run_id
        self.scenario = scenario
        self.device = device
        self.isolation = isolation
        self.host = socket.gethostname()
        self.device_name = device_name(device)
        self.hw_id = hardware_fingerprint(device)["hw_id"]

    def of(self, cell: Cell) -> CellIdentity:
        return cell_identity(
            cell,
            run_id=self.run_id,
            host=self.host,
            device=str(self.device),
            device_name=self.device_name,
            hw_id=self.hw_id,
            scenario=self.scenario,
            threads=torch.get_num_threads(),
            isolation=self.isolation,
            torch_version=torch.__version__,
            git_sha=git_sha(),
        )


def cell_identity(cell: Cell, **machine: Any) -> CellIdentity:
    """A cell's identity: its coordinates from ``cell``, the run and the machine that ran it from ``machine``
    (``run_id``, ``host``, ``device``, ``device_name``, ``hw_id``, ``scenario``, ``threads``, ``isolation``,
    ``torch_version``, ``git_sha``), started now. One place for both a local run and a Ray driver's fault row."""
    return CellIdentity(
        cell_id=cell.cell_id,
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        model=cell.spec.name,
        size=cell.size,
        family=cell.spec.family,
        pipeline=cell.pipeline.text,
        batch_size=cell.batch_size,
        item=cell.spec.item,
        workload=cell.spec.workload,
        target_qps=cell.target_qps if cell.target_qps is not None else math.nan,
        repeat=cell.repeat,
        **machine,
    )


class InProcessExecutor:
    """Runs cells one after another in this process, reusing each model's fp32 reference across its cells.

    ``isolation`` is what the rows say: "none" when this is the run's executor, "process"
    when it runs the one cell of a worker process (bench.harness.worker).
    """

    def __init__(
        self,
        config: RunConfig,
        device: Device,
        run_id: str,
        artifacts_dir: Path | None = None,
        *,
        references: References | None = None,
        scratch: Path | None = None,
        isolation: str = "none",
        run_pids: tuple[int, ...] = (),
    ) -> None:
        self.config = config
        self.device = device
        self.artifacts_dir = artifacts_dir if config.keep_artifacts else None
        self.scratch = scratch  # where a cell's temporary folder goes (None: the system's temp folder)
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        if device.is_cuda:
            torch.cuda.set_device(device.torch_name)  # events, streams and graphs use the current device
        self.identities = Identities(run_id, device, isolation, config.scenario)
        self.references = references or References(device, config.seed)
        self.tools = Instruments(
            device=device,
            timer=timer_for(device),
            nvml=open_gpu(device.index or 0) if device.is_cuda else None,
            peak=usable_peak(device, self.identities.device_name),
        )
        self.settings = CellSettings(
            policy=SamplingPolicy(
                min_samples=config.min_samples, time_budget_s=config.time_budget_s, warmup_s=config.warmup_s
            ),
            min_psnr_db=config.min_psnr_db,
            include_transfers=config.include_transfers and device.is_cuda,
            batch_sizes=config.batch_sizes,
            run_pids=run_pids,
            workload=config.workload_settings(device.is_cuda),
            serving=config.serving_settings(),
        )

    def run(self, cell: Cell) -> CellResult:
        identity = self.identities.of(cell)
        reason = skip_reason(cell.pipeline, self.device, cell.spec.workload)
        if reason is not None:
            return CellResult(identity, skipped(reason))
        workdir = self._workdir(cell)
        try:
            serves = self.settings.serving is not None and self.settings.serving.serves
            measure = measure_server_cell if serves else MEASURES[cell.spec.workload]
            result = measure(cell, identity, self.references, self.tools, self.settings, workdir)
        except KeyboardInterrupt:
            raise
        except SystemExit as exc:  # a model calling sys.exit() ends its cell, not the run
            result = CellResult(identity, CellOutcome("error", f"the model raised SystemExit({exc.code!r})"))
        except Exception as exc:
            result = CellResult(identity, outcome_of(exc))
        finally:
            if self.artifacts_dir is None:
                shutil.rmtree(workdir, ignore_errors=True)
        return self._clean_up_after(cell, result)

    def _clean_up_after(self, cell: Cell, result: CellResult) -> CellResult:
        """Leave what a fresh process would start from, without letting a failed clean-up stop the run.

        Compiled code and CUDA-graph pools outlive the module (``torch.compiler.reset`` after a
        pipeline that compiled); after an oom the failed cell's memory is really freed: only here,
        out of the except block, are its frames (and the tensors they hold through the traceback)
        gone. After a sticky CUDA fault even ``empty_cache`` raises: that goes in the cell's notes.
        """
        try:
            if any(state.compiled for state in cell.pipeline.states):
                torch.compiler.reset()
            if result.status == "oom":
                gc.collect()
            release_device_cache(self.device)
        except Exception as exc:
            note = f"clean-up after the cell failed: {one_line(exc, 200)}"
            notes = "; ".join(n for n in (result.outcome.notes, note) if n)
            return replace(result, outcome=replace(result.outcome, notes=notes))
        return result

    def _workdir(self, cell: Cell) -> Path:
        if self.artifacts_dir is not None:
            path = self.artifacts_dir / f"cell{cell.cell_id:04d}"
            path.mkdir(parents=True, exist_ok=True)
            return path
        return Path(tempfile.mkdtemp(prefix=f"genbench-cell{cell.cell_id}-", dir=self.scratch))

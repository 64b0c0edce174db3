"""One process per cell: a crash, a hang or a leak ends one cell, never the run.

``ProcessExecutor`` implements the executor seam (bench.harness.executor) by running
each cell in a fresh worker process (bench.harness.worker) and waiting for its JSON
reply at most ``RunConfig.cell_timeout()`` seconds. How a worker can end, and the row
it gives:

- it replies: its row, as measured (``ok``, ``error``, ``oom``, ``skipped``...);
- it dies by a signal: ``crashed`` with the signal's name (``SIGSEGV``, ``SIGABRT``),
  except a ``SIGKILL`` while the cgroup's ``oom_kill`` counter rose: the kernel's OOM
  killer, so ``oom`` with that reason;
- it exits without replying (``os._exit`` in a library): ``error`` with the exit code;
- it is still running at the deadline: killed, ``timeout``.

In each failure the reason ends with the last line the worker printed (its stdout and
stderr go to a log file per cell), which is usually the native library's message.

Workers are forked from multiprocessing's forkserver, never from the runner: the
server is a fresh interpreter (started once, by spawn) that has imported torch and
the harness and run nothing, so a worker inherits no thread pools, CUDA context,
compile caches or allocator state. Spawning an interpreter per cell instead costs
its imports every time: 2.3-3.2 s per cell measured on this project's 2-core
machines, 48 cells x ~2.7 s = over half of the default CPU run's 234 s of cells;
a fork from the server costs milliseconds.

Each run gets one scratch folder (the shared fp32 references, the cells' temporary
folders, the logs); it is removed when the run ends, and folders left by a killed
run (its PID gone) are removed when the next run starts.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from bench.core.device import Device
from bench.core.statuses import STATUSES
from bench.harness.config import RunConfig
from bench.harness.executor import Identities
from bench.harness.outcome import skipped
from bench.harness.plan import Cell, skip_reason
from bench.harness.result import PARTS, CellIdentity, CellOutcome, CellResult, PhaseSample, Tables
from bench.harness.worker import decode_reply, job_for, worker_main

SCRATCH_PREFIX = "genbench-run-"
#: what the server imports before it forks workers: the harness, and the heavy libraries passes import
#: lazily (Inductor 2.8 s, onnxscript 1.8 s, Dynamo 1.6 s, onnx 0.9 s measured here), which every worker
#: would otherwise import again. Missing ones are skipped (multiprocessing ignores an ImportError).
#: Not onnxruntime: importing it starts a thread, which a fork would not carry into the worker.
PRELOAD: tuple[str, ...] = (
    "bench.harness.worker", "torch._dynamo", "torch._inductor.compile_fx", "torch.onnx", "onnx", "onnxscript",
    "torch_pruning",
)  # fmt: skip
#: seconds a worker may take to exit after it replied before it is killed (it has nothing left to do)
EXIT_GRACE_S = 30.0
#: the largest reply accepted: 100,000 samples and a row are ~3 MB of JSON, a server cell's requests
#: ~100 bytes each (an hour's soak at 300 requests/s is ~110 MB); a bogus length is refused
MAX_REPLY_BYTES = 256 * 2**20
_ROW_COLUMNS = frozenset(c for part in PARTS for c in part.COLUMNS)


@dataclass(frozen=True)
class ReportedCell:
    """A row as a worker reported it: what the loop needs of a result (``row()``, ``status``, samples)."""

    values: dict[str, Any]
    samples_ms: tuple[float, ...] = field(default=(), repr=False)
    phase_samples: tuple[PhaseSample, ...] = field(default=(), repr=False)
    tables: Tables = field(default_factory=dict, repr=False)

    def row(self) -> dict[str, Any]:
        return dict(self.values)

    @property
    def status(self) -> str:
        return str(self.values["status"])


def oom_kills() -> int | None:
    """The kernel OOM killer's count for this process's cgroup (v2 ``memory.events``); None where unreadable."""
    candidates = [Path("/sys/fs/cgroup/memory.events")]
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, _, path = line.partition("::")
            if path:
                candidates.insert(0, Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.events")
    except OSError:
        pass
    for events in candidates:
        try:
            for line in events.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return None


def remove_stale_scratch(root: Path | None = None) -> list[Path]:
    """Remove scratch folders of runs whose process is gone (a SIGKILLed run leaves its folder)."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    for folder in root.glob(f"{SCRATCH_PREFIX}*"):
        pid_text = folder.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _last_line(log: Path) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.path.getsize(log) - 4096))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


class ProcessExecutor:
    """Runs each cell in a worker process forked from a clean server (module docstring)."""

    isolation = "process"

    def __init__(
        self, config: RunConfig, device: Device, run_id: str, artifacts_dir: Path | None = None
    ) -> None:
        self.config = config
        self.device = device
        self.run_id = run_id
        self.artifacts_dir = artifacts_dir if config.keep_artifacts else None
        if config.threads is not None:  # the rows made here (skipped, crashed) say what the workers use
            torch.set_num_threads(config.threads)
        remove_stale_scratch()
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
        (self.scratch / "references").mkdir()
        self.identities = Identities(run_id, device, self.isolation, config.scenario)
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(list(PRELOAD))

    def run(self, cell: Cell) -> CellResult | ReportedCell:
        identity = self.identities.of(cell)
        reason = skip_reason(cell.pipeline, self.device, cell.spec.workload)
        if reason is not None:
            return CellResult(identity, skipped(reason))
        log = self.scratch / f"cell{cell.cell_id:04d}.log"
        if self.artifacts_dir is not None:
            (self.artifacts_dir / f"cell{cell.cell_id:04d}").mkdir(parents=True, exist_ok=True)
        job = job_for(cell, self.config, str(self.device), self.run_id, self.scratch, log, self.artifacts_dir)
        try:
            return self._run_worker(cell, identity, job, log)
        finally:
            log.unlink(missing_ok=True)

    def close(self) -> None:
        """Remove the run's scratch folder and stop the worker server, so nothing outlives the run."""
        shutil.rmtree(self.scratch, ignore_errors=True)
        from multiprocessing import forkserver

        stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)  # private, CPython 3.8+
        if stop is not None:
            with contextlib.suppress(Exception):
                stop()

    def _run_worker(
        self, cell: Cell, identity: CellIdentity, job: dict[str, Any], log: Path
    ) -> CellResult | ReportedCell:
        receive, send = self._context.Pipe(duplex=False)
        worker = self._context.Process(
            target=worker_main, args=(json.dumps(job), send), name=f"genbench-cell{cell.cell_id}"
        )
        kills_before = oom_kills()
        started = time.monotonic()
        try:
            worker.start()
        except (
            OSError,
            EOFError,
        ) as exc:  # the worker server died or refused: this cell's row, not the run's end
            receive.close()
            send.close()
            return self._failed(identity, "error", f"the worker could not be started: {exc}", log)
        send.close()  # the worker holds the only write end: its death reads as EOF here
        try:
            data = self._await(receive, worker, started + self.config.cell_timeout())
        except BaseException:  # Ctrl-C: the worker goes with the run
            _kill(worker)
            raise
        finally:
            receive.close()
        if data is None:  # the deadline passed
            _kill(worker)
            why = f"killed after {self.config.cell_timeout():.0f} s (--cell-timeout)"
            return self._failed(identity, "timeout", why, log)
        if data:
            return self._reply(identity, data, worker, log)
        # No reply: the worker died, or closed its end of the pipe and lives on (killed after the grace).
        worker.join(EXIT_GRACE_S)
        if worker.is_alive():
            _kill(worker)
            return self._failed(identity, "error", "the worker closed its reply pipe without replying", log)
        _kill_group(worker)  # what it started (compile workers) goes with it
        return self._died(identity, worker.exitcode, kills_before, log)

    @staticmethod
    def _await(receive: Connection, worker: Any, deadline: float) -> bytes | None:
        """The reply's bytes; b"" when the worker died first; None at the deadline."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if receive.poll(min(left, 0.5)):
                try:
                    return receive.recv_bytes(MAX_REPLY_BYTES)
                except (EOFError, OSError):  # closed, or cut off mid-message (the worker was killed sending)
                    return b""
            if not worker.is_alive() and not receive.poll(0):
                return b""

    def _reply(
        self, identity: CellIdentity, data: bytes, worker: Any, log: Path
    ) -> CellResult | ReportedCell:
        worker.join(EXIT_GRACE_S)
        late = worker.is_alive()
        if late:
            _kill(worker)
        _kill_group(worker)  # anything it started and left running goes with it
        try:
            row, samples, phases, error, tables = decode_reply(data)
        except ValueError as exc:
            return self._failed(identity, "error", f"the worker's reply is malformed: {exc}", log)
        if row is None:
            return self._failed(identity, "error", f"the worker could not plan the cell: {error}", log)
        problem = _row_problem(row)
        if problem is not None:
            return self._failed(identity, "error", f"the worker's row is malformed: {problem}", log)
        if late:
            note = f"the worker did not exit within {EXIT_GRACE_S:.0f} s of replying and was killed"
            row["notes"] = "; ".join(n for n in (row.get("notes"), note) if n)
        return ReportedCell(row, tuple(samples), tuple(phases), tables)

    def _died(
        self, identity: CellIdentity, code: int | None, kills_before: int | None, log: Path
    ) -> CellResult:
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            kills_after = oom_kills()
            if (
                -code == signal.SIGKILL
                and None not in (kills_before, kills_after)
                and kills_after > kills_before
            ):
                return self._failed(identity, "oom", "killed by the kernel's OOM killer (SIGKILL)", log)
            return self._failed(identity, "crashed", f"the worker died by {name}", log)
        return self._failed(identity, "error", f"the worker exited with code {code} before reporting", log)

    @staticmethod
    def _failed(identity: CellIdentity, status: str, why: str, log: Path) -> CellResult:
        last = _last_line(log)
        reason = f"{why}; last output: {last}" if last else why
        return CellResult(identity, CellOutcome(status, reason))


def _row_problem(row: dict[str, Any]) -> str | None:
    extra, missing = set(row) - _ROW_COLUMNS, _ROW_COLUMNS - set(row)
    if extra or missing:
        return f"columns {sorted(extra)} unexpected, {sorted(missing)} missing"
    if row.get("status") not in STATUSES:
        return f"status {row.get('status')!r}"
    return None


def _kill(worker: Any) -> None:
    """SIGKILL the worker and its process group (it starts its own session: bench.harness.worker)."""
    _kill_group(worker)
    with contextlib.suppress(Exception):
        worker.kill()
    worker.join(10)


def _kill_group(worker: Any) -> None:
    if worker.pid is None:
        return
    # The worker's first act is setsid(), so its pid names its own group (never the runner's); the group
    # outlives its leader while children remain. ESRCH (no such group) is fine.
    with contextlib.suppress(OSError):
        os.killpg(worker.pid, signal.SIGKILL)

"""The matrix loop: each planned cell through an executor, each result written as soon as it is known.

Every cell ends as a row, whatever happens inside it (the executor maps failures to
``skipped``/``error``/``oom`` rows). Only Ctrl-C stops the run, and rows already
written stay on disk: the writer rewrites its tables atomically after every cell.

An executor that runs many cells at once (``ConcurrentExecutor``: a Ray cluster,
bench.cluster.driver) is given the whole plan and yields each record as its cell ends,
in whatever order they end; the rows are written as they come, by the same writer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from bench.core.device import Device
from bench.harness.config import RunConfig
from bench.harness.executor import CellExecutor, CellRecord, Identities, InProcessExecutor
from bench.harness.isolation import ProcessExecutor
from bench.harness.offline import OfflineSearch
from bench.harness.outcome import skipped
from bench.harness.plan import Cell, plan_cells
from bench.harness.result import CellResult
from bench.results.writer import ResultWriter

__all__ = ["ConcurrentExecutor", "Runner", "plan_cells"]


class ConcurrentExecutor(Protocol):
    """An executor that runs cells side by side: ``on_start`` as each starts, each record as it ends."""

    def run_all(self, cells: list[Cell], on_start: Callable[[Cell], None]) -> Iterator[CellRecord]: ...


class Runner:
    """Runs cells in order through ``executor`` (default: as ``config.isolation`` says), writing each row at once."""

    def __init__(
        self,
        config: RunConfig,
        device: Device,
        writer: ResultWriter,
        run_id: str,
        on_cell_done: Callable[[CellRecord], None] = lambda result: None,
        on_cell_start: Callable[[Cell], None] = lambda cell: None,
        executor: CellExecutor | None = None,
    ) -> None:
        self.writer = writer
        self.search = OfflineSearch() if config.scenario == "offline" else None
        # the rows of cells the offline search skips; only an offline run makes them (a fingerprint's cost)
        self.identities = (
            Identities(run_id, device, config.isolation, config.scenario) if self.search is not None else None
        )
        self.on_cell_done = on_cell_done
        self.on_cell_start = on_cell_start
        self.executor = executor or make_executor(config, device, run_id, writer.out_dir / "artifacts")

    def run(self, cells: list[Cell]) -> None:
        by_id = {cell.cell_id: cell for cell in cells}
        try:
            for result in self._results(cells):
                self.writer.add(result.row(), list(result.samples_ms), result.phase_samples, result.tables)
                if self.search is not None:
                    self.search.observe(by_id[int(result.row()["cell_id"])], result.row())
                self.on_cell_done(result)
            if self.search is not None:
                self._write_best_batches()
        finally:
            close = getattr(self.executor, "close", None)
            if close is not None:
                close()

    def _results(self, cells: list[Cell]) -> Iterator[CellRecord]:
        """Each cell's record: all at once through a concurrent executor, else one after another.

        The offline search decides each cell from the ones before it, so it always runs in order.
        """
        run_all = getattr(self.executor, "run_all", None)
        if run_all is not None and self.search is None:
            yield from run_all(cells, self.on_cell_start)
            return
        for cell in cells:
            self.on_cell_start(cell)
            yield self._run_one(cell)

    def _run_one(self, cell: Cell) -> CellRecord:
        reason = self.search.skip_reason(cell) if self.search is not None else None
        if reason is not None:
            assert self.identities is not None
            return CellResult(self.identities.of(cell), skipped(reason))
        return self.executor.run(cell)

    def _write_best_batches(self) -> None:
        """The offline answer on every row of its model x pipeline, written once every size has run."""
        assert self.search is not None
        for row in self.writer.rows:
            row["best_batch_size"] = self.search.best_batch(row)
        self.writer.flush()


def make_executor(config: RunConfig, device: Device, run_id: str, artifacts_dir: Path) -> CellExecutor:
    """The executor ``config.isolation`` asks for: a worker process per cell, or this process."""
    if config.isolation == "process":
        return ProcessExecutor(config, device, run_id, artifacts_dir)
    return InProcessExecutor(config, device, run_id, artifacts_dir)

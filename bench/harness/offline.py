"""The offline scenario's search: every item available at once, so the answer is the batch size with the
most items/s among those that fit.

The cells of a model x pipeline run from the smallest batch up (``--batch-sizes`` bounds the
search; 1..64 by default). Past a batch that did not fit (``oom``) the larger ones are skipped: they
would not fit either. Once items/s has fallen at two sizes in a row the rest are skipped too: a
larger batch after two losses has never been the best in what this project measured, and each
costs more than the last. The best batch is written on every row of its model x pipeline
(``best_batch_size``) when the run ends.
"""

from __future__ import annotations

import math
from typing import Any

from bench.harness.plan import Cell

#: items/s falling at this many sizes in a row ends a model x pipeline's search
FALLS_TO_STOP = 2

Group = tuple[str, str, str, int]  # model, size, pipeline, repeat


def group_of(cell: Cell) -> Group:
    return (cell.spec.name, cell.size, cell.pipeline.text, cell.repeat)


class OfflineSearch:
    """Follows each model x pipeline's rows as they land: which larger batches to skip, and the best."""

    def __init__(self) -> None:
        self.stopped: dict[Group, tuple[int, str]] = {}  # batches above this size are skipped, and why
        self.best: dict[Group, tuple[int, float]] = {}
        self.last: dict[Group, float] = {}
        self.falls: dict[Group, int] = {}

    def skip_reason(self, cell: Cell) -> str | None:
        stop = self.stopped.get(group_of(cell))
        return stop[1] if stop is not None and cell.batch_size > stop[0] else None

    def observe(self, cell: Cell, row: dict[str, Any]) -> None:
        group = group_of(cell)
        status = row.get("status")
        if status == "oom":
            self.stopped[group] = (
                cell.batch_size,
                f"offline search: batch {cell.batch_size} did not fit, so larger ones would not",
            )
            return
        items_s = row.get("throughput_items_s")
        if status != "ok" or items_s is None or not math.isfinite(items_s):
            return
        best = self.best.get(group)
        if best is None or items_s > best[1]:
            self.best[group] = (cell.batch_size, items_s)
        previous = self.last.get(group)
        self.falls[group] = self.falls.get(group, 0) + 1 if previous is not None and items_s < previous else 0
        self.last[group] = items_s
        if self.falls[group] >= FALLS_TO_STOP:
            size, rate = self.best[group]
            self.stopped[group] = (
                cell.batch_size,
                f"offline search: items/s fell at {FALLS_TO_STOP} batch sizes in a row up to {cell.batch_size} "
                f"(best: batch {size}, {rate:.3g} items/s)",
            )

    def best_batch(self, row: dict[str, Any]) -> int | None:
        """The best batch of the row's model x pipeline (None: none of its cells ran)."""
        group = (row["model"], row["size"], row["pipeline"], int(row.get("repeat") or 0))
        best = self.best.get(group)
        return best[0] if best is not None else None

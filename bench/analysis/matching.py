"""Which cell of BASE is which cell of NEW.

Cells are joined on their key (model, size, pipeline, runtime,
device_name, batch_size, precision) and on what one timed call of theirs is: the
``workload`` (a row without one, from before schema 5, is a ``forward`` call) and that
workload's settings (``WORKLOAD_SETTINGS``: a generation's prompt length, new tokens
and KV cache; a sampling run's steps, guidance and sampler), since a 128-token
generation is not a slower 32-token one. A cell that did not run has no runtime or
precision (nor settings), so leftover cells are matched once more on the key without
those; that is how ``ok -> error`` is seen as one cell that broke rather than as two
one-sided cells. Two cells left with the same key but another workload or other
settings are a *mismatch*: listed with the difference in one line, never judged.
Cells found on one side only are listed, never dropped silently. Several rows with
the same key on one side (a merged folder holding repeated runs, or identical
machines) are *repeats* of that cell and are pooled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

KEY: tuple[str, ...] = (
    "model", "size", "pipeline", "runtime", "device_name", "batch_size", "precision", "scenario", "target_qps",
)  # fmt: skip
LOOSE_KEY: tuple[str, ...] = (
    "model", "size", "pipeline", "device_name", "batch_size", "workload", "scenario", "target_qps",
)  # fmt: skip
#: what a row without a scenario (written before schema 6) ran: one call at a time
DEFAULT_SCENARIO = "single-stream"
#: what one timed call of each workload depends on besides the cell's key: two rows are compared only
#: when these agree (the harness fills them for ok cells of that workload only)
WORKLOAD_SETTINGS: dict[str, tuple[str, ...]] = {
    "forward": (),
    "generate": ("prompt_len", "new_tokens", "kv_cache"),
    "sample": ("steps", "guidance", "sampler"),
}
#: what a row without a workload (written before schema 5) timed
DEFAULT_WORKLOAD = "forward"

Key = tuple[Any, ...]


@dataclass
class Matches:
    """Matched (BASE rows, NEW rows) groups, mismatched ones with the difference, and one-sided rows."""

    pairs: list[tuple[list[int], list[int]]]
    only_base: list[int]
    only_new: list[int]
    mismatched: list[tuple[list[int], list[int], str]] = field(default_factory=list)


def workload_of(row: Any) -> str:
    """The row's workload; empty (a run from before schema 5) reads as a forward call."""
    value = row["workload"] if "workload" in row.index else None
    return DEFAULT_WORKLOAD if value is None or pd.isna(value) else str(value)


def _value(row: Any, column: str) -> Any:
    """A key value as plain Python: None when empty, ints for whole numbers, floats, else text."""
    value = row[column] if column in row.index else None
    if value is None or pd.isna(value):
        return None
    if column == "batch_size":
        return int(value)
    if isinstance(value, bool | str):
        return str(value)
    number = float(value)
    return int(number) if number.is_integer() else number


def scenario_of(row: Any) -> str:
    """The row's scenario; empty (a run from before schema 6) reads as single-stream."""
    value = row["scenario"] if "scenario" in row.index else None
    return DEFAULT_SCENARIO if value is None or pd.isna(value) else str(value)


def _key_of(row: pd.Series, cols: tuple[str, ...]) -> Key:
    def one(c: str) -> Any:
        if c == "workload":
            return workload_of(row)
        if c == "scenario":
            return scenario_of(row)
        return None if c not in row.index or pd.isna(row[c]) else _value(row, c)

    return tuple(one(c) for c in cols)


def settings_of(row: pd.Series) -> dict[str, Any]:
    """The row's workload settings, column -> value (None where the row has none: a cell that did not run)."""
    return {c: _value(row, c) for c in WORKLOAD_SETTINGS.get(workload_of(row), ())}


def settings_text(row: pd.Series) -> str:
    """'prompt 32 + 32 new tokens, static cache', '10 ddim steps, guidance 7.5', or '' (forward, or unknown)."""
    s = settings_of(row)
    workload = workload_of(row)
    if workload == "generate" and s["prompt_len"] is not None and s["new_tokens"] is not None:
        cache = f", {s['kv_cache']} cache" if s["kv_cache"] is not None else ""
        return f"prompt {s['prompt_len']} + {s['new_tokens']} new tokens{cache}"
    if workload == "sample" and s["steps"] is not None:
        sampler = f" {s['sampler']}" if s["sampler"] is not None else ""
        guidance = f", guidance {s['guidance']:g}" if s["guidance"] is not None else ""
        return f"{s['steps']}{sampler} steps{guidance}"
    return ""


def _full_key(row: pd.Series) -> Key:
    """The key two rows must share to be one cell: KEY, the workload and its settings."""
    return (*_key_of(row, KEY), workload_of(row), *settings_of(row).values())


def difference(base: pd.Series, new: pd.Series) -> str:
    """Why two rows of one key are not compared: 'different workload settings (new_tokens 32 vs 128)'."""
    workloads = workload_of(base), workload_of(new)
    if workloads[0] != workloads[1]:
        return f"different workloads ({workloads[0]} vs {workloads[1]})"
    b, n = settings_of(base), settings_of(new)
    changed = [f"{c} {_shown(b[c])} vs {_shown(n[c])}" for c in b if b[c] != n[c]]
    return f"different workload settings ({', '.join(changed)})"


def _shown(value: Any) -> str:
    if value is None:
        return "?"
    return f"{value:g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def _groups(cells: pd.DataFrame) -> dict[Key, list[int]]:
    """Full key -> row positions (repeats of one cell share a key), in first-seen order."""
    groups: dict[Key, list[int]] = {}
    for i, (_, row) in enumerate(cells.iterrows()):
        groups.setdefault(_full_key(row), []).append(i)
    return groups


def match_cells(base: pd.DataFrame, new: pd.DataFrame) -> Matches:
    """Pair the cells of two runs (module docstring): pairs, one-sided rows, mismatched settings."""
    base_groups, new_groups = _groups(base), _groups(new)
    pairs = [(rows, new_groups[k]) for k, rows in base_groups.items() if k in new_groups]
    left_base = {k: rows for k, rows in base_groups.items() if k not in new_groups}
    left_new = {k: rows for k, rows in new_groups.items() if k not in base_groups}

    # A cell that did not run has no runtime/precision, so its key differs from its ok repeats'.
    # First, a repeat that did not run joins the pair of its ok repeats (one pair per loose key)...
    by_loose: dict[Key, list[int]] = {}
    for index, (b_rows, _) in enumerate(pairs):
        by_loose.setdefault(_key_of(base.iloc[b_rows[0]], LOOSE_KEY), []).append(index)
    for side, left, cells in ((0, left_base, base), (1, left_new, new)):
        for k, rows in list(left.items()):
            target = by_loose.get(_key_of(cells.iloc[rows[0]], LOOSE_KEY), [])
            if len(target) == 1 and (cells.iloc[rows]["status"] != "ok").all():
                pairs[target[0]][side].extend(rows)
                del left[k]

    # ...then leftovers pair on the rest of the key, where one side did not run and each side
    # has exactly one leftover cell with that loose key.
    def by_key(
        left: dict[Key, list[int]], cells: pd.DataFrame, cols: tuple[str, ...]
    ) -> dict[Key, list[Key]]:
        out: dict[Key, list[Key]] = {}
        for k, rows in left.items():
            out.setdefault(_key_of(cells.iloc[rows[0]], cols), []).append(k)
        return out

    loose_new = by_key(left_new, new, LOOSE_KEY)
    for lk, base_keys in by_key(left_base, base, LOOSE_KEY).items():
        new_keys = loose_new.get(lk, [])
        if len(base_keys) == 1 and len(new_keys) == 1:
            b_rows, n_rows = left_base[base_keys[0]], left_new[new_keys[0]]
            statuses = set(base.iloc[b_rows]["status"]) | set(new.iloc[n_rows]["status"])
            if statuses != {"ok"}:
                pairs.append((b_rows, n_rows))
                del left_base[base_keys[0]], left_new[new_keys[0]]

    # Last, one leftover a side with the same key but another workload or settings: a mismatch.
    mismatched: list[tuple[list[int], list[int], str]] = []
    strict_new = by_key(left_new, new, KEY)
    for sk, base_keys in by_key(left_base, base, KEY).items():
        new_keys = strict_new.get(sk, [])
        if len(base_keys) == 1 and len(new_keys) == 1:
            b_rows, n_rows = left_base.pop(base_keys[0]), left_new.pop(new_keys[0])
            mismatched.append((b_rows, n_rows, difference(base.iloc[b_rows[0]], new.iloc[n_rows[0]])))
    only_base = sorted(i for rows in left_base.values() for i in rows)
    only_new = sorted(i for rows in left_new.values() for i in rows)
    return Matches(pairs, only_base, only_new, mismatched)

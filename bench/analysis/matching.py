"""Which cell of BASE is which cell of NEW.

Cells are joined on their key (model, size, pipeline, runtime,
device_name, batch_size, precision). A cell that did not run has no runtime or
precision, so leftover cells are matched once more on the key without those two;
that is how ``ok -> error`` is seen as one cell that broke rather than as two
one-sided cells. Cells found on one side only are listed, never dropped
silently. Several rows with the same key on one side (a merged folder holding
repeated runs, or identical machines) are *repeats* of that cell and are pooled.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

KEY: tuple[str, ...] = ("model", "size", "pipeline", "runtime", "device_name", "batch_size", "precision")
LOOSE_KEY: tuple[str, ...] = ("model", "size", "pipeline", "device_name", "batch_size")

Key = tuple[Any, ...]


def _key_of(row: pd.Series, cols: tuple[str, ...]) -> Key:
    return tuple(
        None if pd.isna(row[c]) else (int(row[c]) if c == "batch_size" else str(row[c])) for c in cols
    )


def _groups(cells: pd.DataFrame, cols: tuple[str, ...]) -> dict[Key, list[int]]:
    """Key -> row positions (repeats of one cell share a key), in first-seen order."""
    groups: dict[Key, list[int]] = {}
    for i, (_, row) in enumerate(cells.iterrows()):
        groups.setdefault(_key_of(row, cols), []).append(i)
    return groups


def match_cells(
    base: pd.DataFrame, new: pd.DataFrame
) -> tuple[list[tuple[list[int], list[int]]], list[int], list[int]]:
    """Matched (BASE rows, NEW rows) groups, then the row positions found on one side only."""
    base_groups, new_groups = _groups(base, KEY), _groups(new, KEY)
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
    def loose(left: dict[Key, list[int]], cells: pd.DataFrame) -> dict[Key, list[Key]]:
        out: dict[Key, list[Key]] = {}
        for k, rows in left.items():
            out.setdefault(_key_of(cells.iloc[rows[0]], LOOSE_KEY), []).append(k)
        return out

    loose_new = loose(left_new, new)
    for lk, base_keys in loose(left_base, base).items():
        new_keys = loose_new.get(lk, [])
        if len(base_keys) == 1 and len(new_keys) == 1:
            b_rows, n_rows = left_base[base_keys[0]], left_new[new_keys[0]]
            statuses = set(base.iloc[b_rows]["status"]) | set(new.iloc[n_rows]["status"])
            if statuses != {"ok"}:
                pairs.append((b_rows, n_rows))
                del left_base[base_keys[0]], left_new[new_keys[0]]
    only_base = sorted(i for rows in left_base.values() for i in rows)
    only_new = sorted(i for rows in left_new.values() for i in rows)
    return pairs, only_base, only_new

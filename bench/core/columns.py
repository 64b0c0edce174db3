"""A part of a cells-table row: a dataclass whose fields are, by name, the columns it fills."""

from __future__ import annotations

from typing import Any, ClassVar


class RowPart:
    """``columns()`` is the part's fields named in ``COLUMNS``; parts whose columns are derived override it."""

    COLUMNS: ClassVar[tuple[str, ...]] = ()

    def columns(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.COLUMNS}

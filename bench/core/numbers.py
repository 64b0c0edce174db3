"""The one way numbers are written for people: console tables, Markdown, HTML and verdict reasons.

Missing values (None, NaN, ``pd.NA``) read "-" everywhere, so an empty cell is
never mistaken for zero. PSNR has its own words for its infinities: +inf is
bit-identical output ("exact") and -inf is output with NaN/inf in it
("non-finite"); a bare "inf" in a quality column reads like an overflow.

This module sits in core, not in render, because the report's table builders
and the comparison's "why" text (both analysis) write numbers too, and analysis
never imports render. Stdlib only: cheap to import anywhere.
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "-"


def as_float(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing or not a number (pd.NA, NaN, None, text)."""
    if value is None or isinstance(value, str | bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None  # pd.NA raises TypeError here
    return None if math.isnan(number) else number


def num(value: Any, digits: int = 3) -> str:
    """A general number: ``digits`` significant digits, thousands separators from 1,000 on.

    Integer digits are never rounded away (12,345 not 1.23e+04): a table column of
    throughputs then reads by length. Tiny numbers keep their digits with an exponent.
    """
    number = as_float(value)
    if number is None:
        return MISSING
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    text = f"{number:.{digits}g}"
    if abs(number) >= 1000 or "e+" in text:  # .3g writes 999.7 as 1e+03
        return f"{number:,.0f}"
    return text


def ratio(value: Any, digits: int = 3) -> str:
    """A ratio near 1 with ``digits`` significant digits, trailing zeros kept: 1.00, 0.936, 1.10.

    Kept zeros line a column of ratios up and say how precise each one is ("1" could be 0.6 rounded).
    """
    number = as_float(value)
    if number is None or math.isinf(number) or abs(number) >= 10**digits:
        return num(value, digits)
    return f"{number:#.{digits}g}".rstrip(".")


def fixed(value: Any, decimals: int, suffix: str = "") -> str:
    """Fixed decimals with thousands separators (``1,234.5``), ``suffix`` appended to numbers only."""
    number = as_float(value)
    if number is None:
        return MISSING
    if math.isinf(number):
        return ("inf" if number > 0 else "-inf") + suffix
    return f"{number:,.{decimals}f}{suffix}"


def percent(value: Any, decimals: int = 1, signed: bool = True) -> str:
    """A value already in percent: ``+12.3%`` (``signed``) or ``12.3%``."""
    number = as_float(value)
    if number is None:
        return MISSING
    return f"{number:{'+' if signed else ''}.{decimals}f}%"


def psnr(value: Any) -> str:
    """PSNR in dB with one decimal; +inf (bit-identical output) is "exact", -inf "non-finite"."""
    number = as_float(value)
    if number is None:
        return MISSING
    if math.isinf(number):
        return "exact" if number > 0 else "non-finite"
    return f"{number:.1f}"

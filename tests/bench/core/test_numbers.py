"""The one number formatter (bench.core.numbers) every table, report and verdict reason uses."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.core.numbers import fixed, num, percent, psnr, ratio


@pytest.mark.parametrize("missing", [None, math.nan, pd.NA, np.float64("nan"), "text"])
def test_missing_values_read_as_a_dash(missing: object) -> None:
    assert num(missing) == fixed(missing, 2) == ratio(missing) == percent(missing) == psnr(missing) == "-"


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [
        (0, 3, "0"), (66.9, 3, "66.9"), (0.0225, 3, "0.0225"), (52.835, 3, "52.8"), (999.4, 3, "999"),
        (999.7, 3, "1,000"), (1979, 4, "1,979"), (36985.05, 3, "36,985"), (290723.4, 3, "290,723"),
        (-1234.5, 3, "-1,234"), (1.2e-5, 3, "1.2e-05"), (math.inf, 3, "inf"), (-math.inf, 3, "-inf"),
        (np.int64(8), 3, "8"),
    ],
)  # fmt: skip
def test_num_keeps_integer_digits_and_groups_thousands(value: float, digits: int, text: str) -> None:
    assert num(value, digits) == text


def test_fixed_ratio_and_percent() -> None:
    assert fixed(1234.56, 1) == "1,234.6"
    assert fixed(2.5, 2, "x") == "2.50x"
    assert fixed(None, 2, "x") == "-"  # no suffix on a missing value
    assert [ratio(v) for v in (1.0, 0.93612, 1.1, 12.0, 123.0)] == ["1.00", "0.936", "1.10", "12.0", "123"]
    assert percent(12.345) == "+12.3%" and percent(-0.04) == "-0.0%" and percent(5.0, signed=False) == "5.0%"


def test_psnr_words_for_infinities() -> None:
    assert psnr(math.inf) == "exact"
    assert psnr(-math.inf) == "non-finite"
    assert psnr(38.46) == "38.5"

import math

import pytest
import torch

from bench.measure.fidelity import compare_outputs


def test_identical_outputs_are_perfect() -> None:
    x = torch.randn(2, 3, 8, 8)
    f = compare_outputs(x, x.clone())
    assert f.psnr_db == math.inf
    assert f.max_abs_err == 0.0
    assert f.cosine == pytest.approx(1.0)
    assert f.ok and f.columns()["fidelity_ok"] is True


def test_known_noise_gives_known_psnr() -> None:
    gen = torch.Generator().manual_seed(0)
    ref = torch.rand(4, 3, 64, 64, generator=gen) * 2 - 1  # range ~2 like a tanh image
    peak = float(ref.max() - ref.min())
    sigma = 0.01
    noisy = ref + sigma * torch.randn(ref.shape, generator=gen)
    expected = 10 * math.log10(peak**2 / sigma**2)
    f = compare_outputs(ref, noisy)
    assert f.psnr_db == pytest.approx(expected, abs=0.1)
    assert f.cosine > 0.999
    assert f.max_abs_err > 3 * sigma


def test_psnr_gate() -> None:
    ref = torch.linspace(-1, 1, 1000)
    f = compare_outputs(ref, ref + 0.1)  # mse 0.01, peak 2 -> 26.0 dB
    assert f.psnr_db == pytest.approx(10 * math.log10(4 / 0.01))
    assert not f.ok  # default gate: 30 dB
    assert compare_outputs(ref, ref + 0.1, min_psnr_db=25.0).ok


def test_non_finite_output_is_worst_case() -> None:
    ref = torch.ones(10)
    out = ref.clone()
    out[3] = float("nan")
    f = compare_outputs(ref, out, min_psnr_db=0.0)
    assert f.psnr_db == -math.inf
    assert not f.ok


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differs from reference"):
        compare_outputs(torch.zeros(2, 3), torch.zeros(3, 2))


def test_low_precision_output_is_compared_in_double() -> None:
    ref = torch.randn(1000)
    f = compare_outputs(ref, ref.bfloat16())
    assert 50 < f.psnr_db < 90  # bf16 keeps 8 bits of mantissa: error ~ 2^-9 relative


def test_a_scalar_output_with_round_off_passes() -> None:
    """Was PSNR -inf and fidelity_ok False: a zero value range gave no peak."""
    ref = torch.tensor(1.0)
    f = compare_outputs(ref, ref + 4.8e-7)
    assert f.psnr_db == pytest.approx(20 * math.log10(1.0 / 4.8e-7), rel=1e-3)  # ~126 dB
    assert f.ok and f.cosine == pytest.approx(1.0)


def test_a_constant_output_uses_its_magnitude_as_the_peak() -> None:
    ref = torch.full((2, 3, 4, 4), -2.5, dtype=torch.float64)
    f = compare_outputs(ref, ref + 1e-3)
    assert f.psnr_db == pytest.approx(20 * math.log10(2.5 / 1e-3), rel=1e-6)


def test_an_all_zero_output_uses_a_peak_of_one() -> None:
    ref = torch.zeros(16, dtype=torch.float64)
    f = compare_outputs(ref, ref + 1e-3)
    assert f.psnr_db == pytest.approx(60.0, rel=1e-6)
    assert compare_outputs(ref, ref.clone()).psnr_db == math.inf


def test_tiny_values_do_not_underflow_to_exact_or_minus_inf() -> None:
    ref = torch.linspace(-1, 1, 100, dtype=torch.float64) * 1e-200
    f = compare_outputs(ref, ref * (1 + 1e-6))
    assert math.isfinite(f.psnr_db) and f.psnr_db > 100

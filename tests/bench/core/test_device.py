import pytest

from bench.core.device import Device, check_available, parse_device, supports_dtype


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cpu", Device("cpu")),
        ("CPU", Device("cpu")),
        (" cpu ", Device("cpu")),
        ("cpu:0", Device("cpu")),
        ("cuda", Device("cuda", 0)),
        ("cuda:0", Device("cuda", 0)),
        ("cuda:3", Device("cuda", 3)),
        ("cuda:12", Device("cuda", 12)),
    ],
)
def test_parse_device_accepts_the_documented_forms(text: str, expected: Device) -> None:
    assert parse_device(text) == expected


@pytest.mark.parametrize(
    "text", ["", "gpu", "cuda:", "cuda:-1", "cuda:a", "cuda0", "cuda:0:1", "mps", "cpu:1x"]
)
def test_parse_device_rejects_everything_else(text: str) -> None:
    with pytest.raises(ValueError, match="use cpu, cuda or cuda:N"):
        parse_device(text)


def test_torch_name_is_what_torch_accepts() -> None:
    assert parse_device("cuda").torch_name == "cuda:0"
    assert parse_device("cuda:2").torch_name == "cuda:2"
    assert str(parse_device("cpu")) == "cpu"


def test_cuda_without_gpu_is_a_clear_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the error path cannot be reached")
    with pytest.raises(ValueError, match="CUDA is not available"):
        check_available(parse_device("cuda:0"))


def test_cpu_always_supports_fp32_and_bf16() -> None:
    assert supports_dtype(Device("cpu"), "fp32") is None
    assert supports_dtype(Device("cpu"), "bf16") is None


def test_cpu_fp16_reason_matches_the_hardware() -> None:
    import torch

    native = (
        torch.cpu._is_amx_fp16_supported() or getattr(torch.cpu, "_is_avx512_fp16_supported", lambda: False)()
    )
    reason = supports_dtype(Device("cpu"), "fp16")
    assert (reason is None) == native
    if reason is not None:
        assert "fp16" in reason

"""The one precision mapping: element and weight bytes, and the peak each precision runs at, torchao's included."""

from __future__ import annotations

import pytest

from bench.core.precision import (
    ELEMENT_BYTES,
    PEAK_OF,
    PEAK_PRECISIONS,
    WEIGHT_BYTES,
    compute_precision,
    peak_key,
)


@pytest.mark.parametrize(
    ("precision", "pipeline", "computes"),
    [
        ("int8-wo", "int8wo", "fp32"),  # weights int8, activations (and the matmul) fp32
        ("int8-wo", "bf16+int8wo", "bf16"),  # cast first: bf16 activations
        ("int8-wo", "fp16+int8wo+compile", "fp16"),
        ("int8-wo", "", "fp32"),  # pipeline unknown: the float model's fp32
        ("int8-dq", "int8dq", "int8"),  # int8 x int8 GEMMs
        ("int8-dq", "bf16+int8dq", "int8"),
        ("int4-wo", "bf16+int4wo:64", "bf16"),  # bf16 x int4 kernels only
        ("mixed", "tensorrt", "fp16"),
        ("bf16", "bf16", "bf16"),
    ],
)
def test_compute_precision(precision: str, pipeline: str, computes: str) -> None:
    assert compute_precision(precision, pipeline) == computes


def test_weight_bytes_of_the_torchao_precisions() -> None:
    assert WEIGHT_BYTES["int8-wo"] == 1 and WEIGHT_BYTES["int8-dq"] == 1 and WEIGHT_BYTES["int4-wo"] == 0.5
    assert WEIGHT_BYTES["bf16"] == ELEMENT_BYTES["bf16"] == 2
    # their activations stay float: no single element size describes every tensor of them
    assert not {"int8-wo", "int8-dq", "int4-wo"} & set(ELEMENT_BYTES)


def test_peak_key_maps_every_precision_to_a_peak_a_device_can_give() -> None:
    assert set(PEAK_OF.values()) <= set(PEAK_PRECISIONS)
    assert peak_key("int8-wo", has_tf32=True) == "tf32"  # fp32 activations on a device with TF32
    assert peak_key("int8-wo", has_tf32=True, fp32_as="fp32") == "fp32"
    assert peak_key("int8-wo", has_tf32=True, pipeline="bf16+int8wo") == "bf16"
    assert peak_key("int8-dq", has_tf32=True) == "int8"
    assert peak_key("int4-wo", has_tf32=False) == "bf16"
    assert peak_key("fp32", has_tf32=False) == "fp32"
    assert peak_key("nf4", has_tf32=True) is None

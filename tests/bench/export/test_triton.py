"""config.pbtxt: written as Triton's model configuration requires, and read back by the small parser."""

from __future__ import annotations

import pytest

from bench.export.signature import Signature, TensorSpec
from bench.export.triton import (
    PbtxtError,
    TritonError,
    TritonSettings,
    as_list,
    config_text,
    model_name,
    parse_pbtxt,
    problems,
)

UNET = Signature(
    inputs=(
        TensorSpec("input_0", ("batch", 3, 16, 16), "float32"),
        TensorSpec("input_1", ("batch",), "int64"),
    ),
    outputs=(TensorSpec("output", ("batch", 3, 16, 16), "float32"),),
)
CPU = TritonSettings(max_batch=8, max_queue_delay_ms=5, preferred_batch_sizes=(8,), on_gpu=False)


def test_an_onnx_config_has_every_field_triton_requires() -> None:
    config = parse_pbtxt(config_text("unet-tiny-ort-b8", "onnx", UNET, CPU))
    assert problems(config) == []
    assert config["name"] == "unet-tiny-ort-b8"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == 8
    image, steps = config["input"]
    assert (image["name"], image["data_type"], image["dims"]) == ("input_0", "TYPE_FP32", [3, 16, 16])
    # rank 0 is not allowed once the batch axis is out: [1] on the wire, reshaped to the model's [batch]
    assert (steps["data_type"], steps["dims"], steps["reshape"]) == ("TYPE_INT64", [1], {"shape": []})
    assert config["output"][0]["dims"] == [3, 16, 16]
    assert config["dynamic_batching"] == {"preferred_batch_size": [8], "max_queue_delay_microseconds": 5000}
    assert config["instance_group"] == [{"kind": "KIND_CPU", "count": 1}]


def test_a_tensorrt_engine_runs_on_the_gpu_with_its_profiles_preferred() -> None:
    settings = TritonSettings(
        max_batch=8, max_queue_delay_ms=0.5, preferred_batch_sizes=(1, 8, 32), on_gpu=True
    )
    config = parse_pbtxt(config_text("m", "tensorrt", UNET, settings))
    assert problems(config) == []
    assert config["platform"] == "tensorrt_plan"
    assert config["dynamic_batching"]["preferred_batch_size"] == [1, 8]  # 32 is above max_batch_size
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 500
    assert config["instance_group"][0]["kind"] == "KIND_GPU"


def test_ort_tensorrt_provider_asks_for_triton_s_accelerator() -> None:
    settings = TritonSettings(8, 5, (8,), on_gpu=True, ort_tensorrt=True)
    config = parse_pbtxt(config_text("m", "onnx", UNET, settings))
    accelerators = config["optimization"]["execution_accelerators"]["gpu_execution_accelerator"]
    assert accelerators == [{"name": "tensorrt"}]


def test_a_fixed_first_axis_is_not_batched() -> None:
    fixed = Signature((TensorSpec("x", (2, 8), "float16"),), (TensorSpec("y", (2, "n"), "float16"),))
    config = parse_pbtxt(config_text("m", "onnx", fixed, CPU))
    assert problems(config) == []
    assert config["max_batch_size"] == 0
    assert config["input"][0]["dims"] == [2, 8] and config["input"][0]["data_type"] == "TYPE_FP16"
    assert config["output"][0]["dims"] == [2, -1]  # a free axis is -1
    assert "dynamic_batching" not in config


def test_a_dtype_triton_has_no_type_for_is_one_line() -> None:
    odd = Signature(
        (TensorSpec("x", ("batch", 2), "complex64"),), (TensorSpec("y", ("batch", 2), "float32"),)
    )
    with pytest.raises(TritonError, match="complex64"):
        config_text("m", "onnx", odd, CPU)


def test_the_parser_reads_the_text_format() -> None:
    text = """
    # a comment
    name: "a \\"quoted\\" name"
    max_batch_size: 4
    input { name: "x" dims: [ -1, 3 ] }
    input { name: "y" dims: 2 dims: 5 }
    dynamic_batching { }
    parameters: < key: "k" value: { string_value: "v" } >
    flag: true
    ratio: 0.5
    """
    config = parse_pbtxt(text)
    assert config["name"] == 'a "quoted" name'
    assert [i["name"] for i in config["input"]] == ["x", "y"]  # a field written twice is repeated
    assert config["input"][0]["dims"] == [-1, 3] and config["input"][1]["dims"] == [2, 5]
    assert config["dynamic_batching"] == {}
    assert config["parameters"] == {"key": "k", "value": {"string_value": "v"}}
    assert config["flag"] is True and config["ratio"] == 0.5
    assert as_list(config["max_batch_size"]) == [4] and as_list(None) == []


@pytest.mark.parametrize("text", ['name: "open', "input { name: 1", "a: ]", "{ x: 1 }", "a: @"])
def test_malformed_text_is_refused(text: str) -> None:
    with pytest.raises(PbtxtError):
        parse_pbtxt(text)


def test_problems_finds_what_triton_refuses() -> None:
    config = parse_pbtxt(
        'platform: "pytorch" max_batch_size: 2 input { name: "x" data_type: TYPE_FOO dims: [ ] } '
        "dynamic_batching { preferred_batch_size: [ 4 ] } instance_group [ { kind: KIND_TPU } ]"
    )
    found = "; ".join(problems(config))
    for expected in ("no name", "platform 'pytorch'", "TYPE_FOO", "dims []", "no output", "preferred_batch_size 4",
                     "KIND_TPU"):  # fmt: skip
        assert expected in found


def test_model_names_are_folder_safe() -> None:
    assert model_name("dcgan-small-prune:0.5+int8-b8") == "dcgan-small-prune-0-5-int8-b8"
    assert model_name("my.pkg:make_gen-custom") == "my-pkg-make_gen-custom"
    assert model_name("::") == "model"

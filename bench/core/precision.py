"""Precision names, their element sizes, and which measured peak bounds each: the one mapping.

Both the run (``pct_of_peak``) and the projection (the roofline's ceiling) ask
"at which peak does a row of this precision run?"; they used to answer it in two
places and disagreed on ``mixed``. ``peak_key`` is that answer.

The torchao precisions store weights in one precision and multiply in another, so a
row's precision alone does not say both:

- ``int8-wo`` (int8 weight-only): int8 weights, cast back to the activations' dtype for
  a float matmul, so it computes as that dtype: fp32, or bf16/fp16 when the pipeline
  cast the model first (``bf16+int8wo``, ``compute_precision`` reads the pipeline);
- ``int8-dq`` (int8 dynamic activations + int8 weights): an int8 x int8 GEMM, the int8 peak;
- ``int4-wo`` (int4 weight-only, grouped): bf16 x int4 kernels, the bf16 peak (the pass
  takes bf16 models only).

``WEIGHT_BYTES`` gives their bytes per stored weight (1, 1 and 0.5). ``ELEMENT_BYTES`` is
for precisions whose every tensor has one element size (what bench.measure.work multiplies
its element counts by), so it leaves the torchao ones out: their activations stay float,
and one size for every element would misstate their traffic.
"""

from __future__ import annotations

#: every precision a peak can be given for (catalogue and measured peaks)
PEAK_PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8")
#: bytes per element of a tensor stored in each precision a row can report (every tensor alike)
ELEMENT_BYTES: dict[str, int] = {
    "fp32": 4,
    "tf32": 4,
    "fp16": 2,
    "bf16": 2,
    "mixed": 2,
    "fp8": 1,
    "int8": 1,
}
#: bytes per stored weight: the uniform precisions' element size, and the torchao quantized weights
#: (per-row or per-group scales, a few bytes per row or group, are not counted)
WEIGHT_BYTES: dict[str, float] = {**ELEMENT_BYTES, "int8-wo": 1.0, "int8-dq": 1.0, "int4-wo": 0.5}
#: the precision whose peak bounds a row; "mixed" (TensorRT's best: fp16/bf16/int8 kernels as
#: the builder picks) is bounded by the 16-bit tensor-core rate, the one it mostly runs at;
#: "int8-wo" computes in its activations' dtype, fp32 unless the pipeline cast first (compute_precision)
PEAK_OF: dict[str, str] = {
    "fp32": "fp32",
    "tf32": "tf32",
    "fp16": "fp16",
    "bf16": "bf16",
    "mixed": "fp16",
    "fp8": "fp8",
    "int8": "int8",
    "int8-wo": "fp32",
    "int8-dq": "int8",
    "int4-wo": "bf16",
}
#: precisions whose matmuls run in the activations' dtype, not in the weights'
WEIGHT_ONLY: tuple[str, ...] = ("int8-wo", "int4-wo")
#: the casts a pipeline can apply before a weight-only quantization (optimizers.torch_passes)
FLOAT_CASTS: tuple[str, ...] = ("bf16", "fp16")


def compute_precision(precision: str, pipeline: str = "") -> str | None:
    """The precision a row's matmuls run in (a ``PEAK_OF`` value), None for an unknown precision.

    For int8 weight-only that is the activations' dtype: the last float cast among the
    pipeline's steps (``"bf16+int8wo"`` -> bf16), fp32 without one. int4 weight-only runs
    bf16 x int4 kernels whatever the pipeline says.
    """
    key = PEAK_OF.get(precision)
    if precision == "int8-wo":
        steps = [step.split(":")[0].strip() for step in pipeline.split("+")]
        casts = [step for step in steps if step in FLOAT_CASTS]
        return casts[-1] if casts else key
    return key


def peak_key(precision: str, has_tf32: bool, fp32_as: str = "tf32", pipeline: str = "") -> str | None:
    """The peak that bounds a row in ``precision`` on a device (None: no mapping for that precision).

    fp32 rows use the TF32 peak where the device has one and ``fp32_as`` is "tf32": PyTorch
    leaves cuDNN's TF32 on by default (``torch.backends.cudnn.allow_tf32``), and these models'
    FLOPs are convolutions. ``fp32_as="fp32"`` asks for the CUDA-core rate instead.
    ``pipeline`` (the row's pipeline text) says what an int8 weight-only row computes in.
    """
    key = compute_precision(precision, pipeline)
    if key in ("fp32", "tf32"):
        wants_tf32 = key == "tf32" or fp32_as == "tf32"
        return "tf32" if wants_tf32 and has_tf32 else "fp32"
    return key

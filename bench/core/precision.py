"""Precision names, their element sizes, and which measured peak bounds each: the one mapping.

Both the run (``pct_of_peak``) and the projection (the roofline's ceiling) ask
"at which peak does a row of this precision run?"; they used to answer it in two
places and disagreed on ``mixed``. ``peak_key`` is that answer.
"""

from __future__ import annotations

#: every precision a peak can be given for (catalogue and measured peaks)
PEAK_PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8")
#: bytes per element of a tensor stored in each precision a row can report
ELEMENT_BYTES: dict[str, int] = {
    "fp32": 4,
    "tf32": 4,
    "fp16": 2,
    "bf16": 2,
    "mixed": 2,
    "fp8": 1,
    "int8": 1,
}
#: the precision whose peak bounds a row; "mixed" (TensorRT's best: fp16/bf16/int8 kernels as
#: the builder picks) is bounded by the 16-bit tensor-core rate, the one it mostly runs at
PEAK_OF: dict[str, str] = {
    "fp32": "fp32",
    "tf32": "tf32",
    "fp16": "fp16",
    "bf16": "bf16",
    "mixed": "fp16",
    "fp8": "fp8",
    "int8": "int8",
}


def peak_key(precision: str, has_tf32: bool, fp32_as: str = "tf32") -> str | None:
    """The peak that bounds a row in ``precision`` on a device (None: no mapping for that precision).

    fp32 rows use the TF32 peak where the device has one and ``fp32_as`` is "tf32": PyTorch
    leaves cuDNN's TF32 on by default (``torch.backends.cudnn.allow_tf32``), and these models'
    FLOPs are convolutions. ``fp32_as="fp32"`` asks for the CUDA-core rate instead.
    """
    key = PEAK_OF.get(precision)
    if key in ("fp32", "tf32"):
        wants_tf32 = key == "tf32" or fp32_as == "tf32"
        return "tf32" if wants_tf32 and has_tf32 else "fp32"
    return key

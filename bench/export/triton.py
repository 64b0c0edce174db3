"""A Triton Inference Server model repository for an exported ONNX model or TensorRT engine.

Written as Triton's model configuration (``config.pbtxt``, the protobuf text form of
``ModelConfig`` in Triton's model_config.proto), laid out as Triton loads it::

    triton/<model>/config.pbtxt
    triton/<model>/1/model.onnx        (platform onnxruntime_onnx; + model.onnx.data)
    triton/<model>/1/model.plan        (platform tensorrt_plan)

What Triton requires and how it is filled in:
- ``max_batch_size`` > 0 makes Triton batch along the first axis, which is then left
  out of every ``dims``; it is used only when the file leaves the first axis of every
  tensor free (genbench's exports do). A model with a fixed first axis gets 0, its
  full shapes, and no dynamic batching.
- ``dims`` needs rank >= 1. An input that is only the batch axis (the UNet's
  timesteps, shape ``[batch]``) is declared ``dims: [ 1 ]`` with ``reshape { shape:
  [ ] }``: the client sends ``[batch, 1]``, the model receives ``[batch]``.
- ``dynamic_batching``: the preferred batch sizes are the ones measured (a TensorRT
  engine has an optimization profile for those only), ``max_queue_delay_microseconds``
  from ``--max-queue-delay-ms``.
- ``instance_group``: one instance, ``KIND_GPU`` for a model that runs on a GPU
  (CUDA or TensorRT execution provider, TensorRT engines), else ``KIND_CPU``; an ONNX
  model meant for ONNX Runtime's TensorRT provider asks for it as Triton's
  ``gpu_execution_accelerator``.

The parser reads the text format back (messages, lists, repeated fields, strings,
numbers, enum words, comments), good enough to check a written file's fields without
a Triton server; ``problems`` lists what Triton would refuse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core.errors import UsageError
from bench.export.signature import Signature, TensorSpec

PLATFORMS: dict[str, str] = {"onnx": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}
MODEL_FILES: dict[str, str] = {"onnx": "model.onnx", "tensorrt": "model.plan"}
#: the manifest's dtype names -> Triton's DataType enum (model_config.proto)
TRITON_TYPES: dict[str, str] = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "bfloat16": "TYPE_BF16",
}
INSTANCE_KINDS = ("KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL")
VERSION = "1"


class TritonError(UsageError):
    """A model that a Triton configuration cannot describe (a dtype Triton has no type for)."""


@dataclass(frozen=True)
class TritonSettings:
    max_batch: int
    max_queue_delay_ms: float
    preferred_batch_sizes: tuple[int, ...]
    on_gpu: bool
    #: ONNX Runtime's TensorRT execution provider, asked for through Triton's ORT backend
    ort_tensorrt: bool = False


def model_name(text: str) -> str:
    """A Triton model name (its folder's name): letters, digits, ``-`` and ``_`` only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "model"


def _dims(tensor: TensorSpec, batched: bool) -> tuple[list[int], bool]:
    """Triton's dims (free axes as -1), without the batch axis when batched; and whether it needs a reshape."""
    shape = tensor.shape[1:] if batched else tensor.shape
    dims = [d if isinstance(d, int) else -1 for d in shape]
    if not dims:  # rank 0 is not allowed: [1] on the wire, reshaped to the model's [batch]
        return [1], True
    return dims, False


def _tensor_block(tensor: TensorSpec, batched: bool) -> list[str]:
    if tensor.dtype not in TRITON_TYPES:
        raise TritonError(f"tensor {tensor.name!r} has dtype {tensor.dtype}, which Triton has no type for")
    dims, reshape = _dims(tensor, batched)
    lines = [
        "  {",
        f"    name: {_quote(tensor.name)}",
        f"    data_type: {TRITON_TYPES[tensor.dtype]}",
        f"    dims: [ {', '.join(str(d) for d in dims)} ]",
    ]
    if reshape:
        lines.append("    reshape: { shape: [ ] }")
    lines.append("  }")
    return lines


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_text(name: str, kind: str, signature: Signature, settings: TritonSettings) -> str:
    """config.pbtxt for an artifact of ``kind`` ("onnx" or "tensorrt") with this signature."""
    batched = signature.batched and settings.max_batch > 0
    max_batch = settings.max_batch if batched else 0
    lines = [
        f"name: {_quote(name)}",
        f"platform: {_quote(PLATFORMS[kind])}",
        f"max_batch_size: {max_batch}",
    ]
    for field, tensors in (("input", signature.inputs), ("output", signature.outputs)):
        blocks = [_tensor_block(t, batched) for t in tensors]
        lines.append(f"{field} [")
        for i, block in enumerate(blocks):
            if i < len(blocks) - 1:
                block = [*block[:-1], "  },"]
            lines.extend(block)
        lines.append("]")
    if batched:
        preferred = sorted({b for b in settings.preferred_batch_sizes if 1 <= b <= max_batch}) or [max_batch]
        delay_us = round(settings.max_queue_delay_ms * 1000)
        lines += [
            "dynamic_batching {",
            f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]",
            f"  max_queue_delay_microseconds: {delay_us}",
            "}",
        ]
    kind_name = "KIND_GPU" if settings.on_gpu or kind == "tensorrt" else "KIND_CPU"
    lines += ["instance_group [", "  {", f"    kind: {kind_name}", "    count: 1", "  }", "]"]
    if kind == "onnx" and settings.ort_tensorrt:
        lines += [
            "optimization {",
            "  execution_accelerators {",
            '    gpu_execution_accelerator: [ { name: "tensorrt" } ]',
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def write_repository(
    root: Path, name: str, kind: str, files: tuple[Path, ...], signature: Signature, settings: TritonSettings
) -> Path:
    """``root/<name>/config.pbtxt`` and ``root/<name>/1/`` holding ``files`` (the model first, under
    Triton's default file name; the rest, an ONNX model's external weights, keep their names, which the
    model refers to). Files are hard-linked where the file system allows, else copied."""
    import shutil

    text = config_text(name, kind, signature, settings)  # first: a model it cannot describe leaves no folder
    folder = root / name
    version = folder / VERSION
    version.mkdir(parents=True)
    (folder / "config.pbtxt").write_text(text)
    for i, source in enumerate(files):
        target = version / (MODEL_FILES[kind] if i == 0 else source.name)
        try:
            target.hardlink_to(source)
        except OSError:
            shutil.copy2(source, target)
    return folder


# ------------------------------------------------------------------ the text format, read back
_TOKEN = re.compile(
    r'(?P<str>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|(?P<punct>[{}\[\]:,;<>])|(?P<word>[-+.\w]+)'
)


class PbtxtError(ValueError):
    """Text that is not protobuf text format as this parser reads it; the message names the offset."""


def _tokens(text: str) -> list[tuple[str, str, int]]:
    tokens, pos = [], 0
    while True:
        rest = re.match(r"(?:\s|#[^\n]*)*", text[pos:])
        pos += rest.end() if rest else 0
        if pos >= len(text):
            return tokens
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise PbtxtError(f"unexpected character {text[pos]!r} at offset {pos}")
        kind = match.lastgroup or "word"
        tokens.append((kind, match.group(kind), pos))
        pos = match.end()


def _scalar(kind: str, value: str) -> Any:
    if kind == "str":
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    if value in ("true", "false"):
        return value == "true"
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value  # an enum word: TYPE_FP32, KIND_GPU


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise PbtxtError(f"unexpected end of text{f', expected {expected!r}' if expected else ''}")
        if expected is not None and token[1] != expected:
            raise PbtxtError(f"expected {expected!r} at offset {token[2]}, found {token[1]!r}")
        self.i += 1
        return token

    def message(self, closing: str | None) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        while True:
            token = self.peek()
            if token is None:
                if closing is not None:
                    raise PbtxtError(f"unexpected end of text, expected {closing!r}")
                return fields
            if closing is not None and token[1] == closing:
                self.take()
                return fields
            if token[1] in (",", ";"):
                self.take()
                continue
            kind, name, offset = self.take()
            if kind != "word":
                raise PbtxtError(f"expected a field name at offset {offset}, found {name!r}")
            value, is_list = self.field_value()
            if name in fields:  # a repeated field written once per element
                held = fields[name] if isinstance(fields[name], list) else [fields[name]]
                fields[name] = held + (value if is_list else [value])
            else:
                fields[name] = value

    def field_value(self) -> tuple[Any, bool]:
        if self.peek() is not None and self.peek()[1] == ":":  # type: ignore[index]
            self.take()
        token = self.peek()
        if token is None:
            raise PbtxtError("unexpected end of text, expected a value")
        if token[1] == "[":
            self.take()
            items: list[Any] = []
            while True:
                token = self.peek()
                if token is not None and token[1] == "]":
                    self.take()
                    return items, True
                if token is not None and token[1] == ",":
                    self.take()
                    continue
                items.append(self.value())
        return self.value(), False

    def value(self) -> Any:
        kind, text, offset = self.take()
        if text in ("{", "<"):
            return self.message("}" if text == "{" else ">")
        if kind == "punct":
            raise PbtxtError(f"expected a value at offset {offset}, found {text!r}")
        return _scalar(kind, text)


def parse_pbtxt(text: str) -> dict[str, Any]:
    """Protobuf text format as nested dicts: a field written with ``[...]`` or more than once is a list."""
    return _Parser(text).message(None)


def as_list(value: Any) -> list[Any]:
    """A field that may be repeated, as a list whether it was written once or several times."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def problems(config: dict[str, Any]) -> list[str]:
    """What Triton would refuse in a parsed config.pbtxt (empty: nothing found), per model_config.proto."""
    found: list[str] = []
    if not isinstance(config.get("name"), str) or not config["name"]:
        found.append("no name")
    if config.get("platform") not in PLATFORMS.values() and "backend" not in config:
        found.append(f"platform {config.get('platform')!r} is not one of {', '.join(PLATFORMS.values())}")
    max_batch = config.get("max_batch_size")
    if not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 0:
        found.append(f"max_batch_size {max_batch!r} is not a whole number >= 0")
        max_batch = 0
    for field in ("input", "output"):
        tensors = as_list(config.get(field))
        if not tensors:
            found.append(f"no {field}")
        for tensor in tensors:
            if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
                found.append(f"an {field} without a name")
                continue
            if tensor.get("data_type") not in TRITON_TYPES.values():
                found.append(f"{field} {tensor['name']}: data_type {tensor.get('data_type')!r} unknown")
            dims = as_list(tensor.get("dims"))
            if not dims or not all(isinstance(d, int) and d >= -1 for d in dims):
                found.append(f"{field} {tensor['name']}: dims {dims!r} must be >= 1 values, each -1 or more")
    batching = config.get("dynamic_batching")
    if batching is not None:
        if max_batch == 0:
            found.append("dynamic_batching with max_batch_size 0")
        elif isinstance(batching, dict):
            for size in as_list(batching.get("preferred_batch_size")):
                if not isinstance(size, int) or not 1 <= size <= max_batch:
                    found.append(f"preferred_batch_size {size!r} outside 1..{max_batch}")
            delay = batching.get("max_queue_delay_microseconds", 0)
            if not isinstance(delay, int) or delay < 0:
                found.append(f"max_queue_delay_microseconds {delay!r} is not a whole number >= 0")
    for group in as_list(config.get("instance_group")):
        if not isinstance(group, dict) or group.get("kind", "KIND_AUTO") not in INSTANCE_KINDS:
            found.append(f"instance_group kind {group!r} unknown")
        elif not isinstance(group.get("count", 1), int) or group.get("count", 1) < 1:
            found.append(f"instance_group count {group.get('count')!r} is not >= 1")
    return found

"""Optional libraries: whether one is installed, and the one sentence that says how to get it.

Checked with ``importlib.util.find_spec``, which finds a module without importing
it, so asking "is onnxruntime here?" costs nothing. The install hint fits both
ways genbench is installed: from a git checkout (``pip install -e ".[onnx]"``) and
from a package index (``pip install "genbench[onnx]"``); ``pip install
'genbench[onnx]'`` alone fails in a checkout, where no package of that name exists.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: import name -> (pip distribution, genbench extra that brings it)
EXTRAS: dict[str, tuple[str, str]] = {
    "onnx": ("onnx", "onnx"),
    "onnxscript": ("onnxscript", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "torch_pruning": ("torch-pruning", "prune"),
    "matplotlib": ("matplotlib", "report"),
    "pynvml": ("nvidia-ml-py", "gpu"),
    "tensorrt": ("tensorrt", "tensorrt"),
    "torchao": ("torchao", "ao"),
    "prometheus_client": ("prometheus-client", "serve"),
    "openvino": ("openvino", "openvino"),
    "nncf": ("nncf", "openvino"),
}

_CHECKOUT = (Path(__file__).resolve().parents[2] / "pyproject.toml").is_file()


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def install_hint(extra: str) -> str:
    """How to install a genbench extra, in the form that works for this install."""
    if _CHECKOUT:
        return f'pip install -e ".[{extra}]"'
    return f'pip install "genbench[{extra}]"'


def missing(*modules: str) -> str | None:
    """None when every module is importable, else why not and how to install the first one missing."""
    for module in modules:
        if installed(module):
            continue
        distribution, extra = EXTRAS.get(module, (module, ""))
        how = install_hint(extra) if extra else f"pip install {distribution}"
        return f"{distribution} is not installed ({how})"
    return None

"""``--weights FILE.safetensors``: real weights for a built model, checked name by name and shape by shape.

Random weights time an architecture; real ones are what fidelity and a generation's
early stop depend on. The file is read with safetensors (never pickle, so a weights
file cannot run code), and is checked whole against the module's ``state_dict``
before anything is copied, so a wrong file is a one-line ``ValueError`` naming the
first problem, never a half-loaded model.

Tied parameters (an embedding shared with the LM head, say) appear in the
``state_dict`` under every name; a file may hold any one of those names or all of
them (all equal). Values are copied into the module's tensors, so they take the
module's dtype and device.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

_INSTALL_HINT = "--weights needs safetensors: pip install 'genbench[hf]'"
_MAX_NAMED = 3


def _names(names: list[str]) -> str:
    """Up to three names, then how many more."""
    shown = ", ".join(names[:_MAX_NAMED])
    more = len(names) - _MAX_NAMED
    return f"{shown} and {more} more" if more > 0 else shown


def _shape(shape: torch.Size | tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def _tied_groups(module: nn.Module) -> list[list[str]]:
    """The module's state_dict names grouped by the tensor they name (tied parameters share a group)."""
    groups: dict[int, list[str]] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    return list(groups.values())


def load_weights(module: nn.Module, path: str) -> str:
    """Load the safetensors file at ``path`` into ``module`` in place; return a note for the row.

    Every key and shape is checked first: a missing file, a file that is not
    safetensors, keys the module lacks or tensors the file lacks, and a shape that
    differs are each a one-line ``ValueError`` beginning ``weights FILE:``.
    """
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ValueError(_INSTALL_HINT) from None
    label = f"weights {path}"
    if not Path(path).is_file():
        raise ValueError(f"{label}: no such file")
    try:
        tensors = load_file(path)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        why = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
        raise ValueError(f"{label}: not a safetensors file ({why})") from exc

    wanted = module.state_dict()
    unexpected = [name for name in tensors if name not in wanted]
    if unexpected:
        raise ValueError(
            f"{label}: {len(unexpected)} tensor(s) the model does not have: {_names(sorted(unexpected))}"
        )
    groups = _tied_groups(module)
    missing = [group[0] for group in groups if not any(name in tensors for name in group)]
    if missing:
        raise ValueError(f"{label}: {len(missing)} tensor(s) missing from the file: {_names(missing)}")
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(wanted[name].shape):
            raise ValueError(
                f"{label}: {name} has shape {_shape(tensor.shape)}, the model wants {_shape(wanted[name].shape)}"
            )

    full: dict[str, torch.Tensor] = {}
    for group in groups:
        present = [name for name in group if name in tensors]
        first = tensors[present[0]]
        for other in present[1:]:
            if not torch.equal(first, tensors[other]):
                raise ValueError(
                    f"{label}: {present[0]} and {other} are tied in the model but differ in the file"
                )
        for name in group:
            full[name] = first
    with torch.no_grad():
        module.load_state_dict(full, strict=True)
    return f"weights from {path} ({len(tensors)} tensors)"

"""``--weights FILE.safetensors``: every key and shape is checked before anything is copied.

The model has a tied embedding/LM head (one tensor, two state_dict names) and a
buffer, the two things a naive name-by-name loader gets wrong.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("safetensors")
from safetensors.torch import save_file  # noqa: E402

from reference_models.spec import build_seeded  # noqa: E402
from reference_models.weights import load_weights  # noqa: E402


class TiedLM(nn.Module):
    def __init__(self, vocab: int = 256, dim: int = 64) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.tok_emb.weight
        self.register_buffer("scale", torch.ones(dim))


def model(seed: int = 0) -> TiedLM:
    return build_seeded(TiedLM, seed=seed)


def tensors_of(module: nn.Module, *, drop: tuple[str, ...] = ("head.weight",)) -> dict[str, torch.Tensor]:
    """The module's state as a file would hold it: tied names once (safetensors refuses shared memory)."""
    return {k: v.clone() for k, v in module.state_dict().items() if k not in drop}


def write(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    save_file(tensors, str(path))
    return str(path)


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_restores_an_altered_model(tmp_path: Path) -> None:
    source = model()
    with torch.no_grad():
        source.scale.mul_(3.0)  # buffers travel too
    path = write(tmp_path / "w.safetensors", tensors_of(source))
    target = model(seed=1)
    assert not torch.equal(target.tok_emb.weight, source.tok_emb.weight)
    note = load_weights(target, path)
    assert note == f"weights from {path} (4 tensors)"
    assert_same_state(target, source)
    assert target.head.weight is target.tok_emb.weight, "the tie survives loading"


@pytest.mark.parametrize("drop", [(), ("tok_emb.weight",)], ids=["both-names", "head-name-only"])
def test_tied_weights_may_come_under_either_or_both_names(tmp_path: Path, drop: tuple[str, ...]) -> None:
    source = model()
    path = write(tmp_path / "w.safetensors", tensors_of(source, drop=drop))
    target = model(seed=1)
    load_weights(target, path)
    assert_same_state(target, source)


def test_tied_names_that_differ_in_the_file_are_refused(tmp_path: Path) -> None:
    tensors = tensors_of(model(), drop=())
    tensors["head.weight"] += 1.0
    path = write(tmp_path / "w.safetensors", tensors)
    with pytest.raises(ValueError, match=r"tied in the model but differ in the file$"):
        load_weights(model(seed=1), path)


def test_wrong_shape_names_the_tensor_and_both_shapes(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.safetensors",
        tensors_of(model(), drop=("head.weight",)) | {"tok_emb.weight": torch.zeros(10, 64)},
    )
    target = model(seed=1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError) as info:
        load_weights(target, path)
    assert str(info.value) == f"weights {path}: tok_emb.weight has shape (10, 64), the model wants (256, 64)"
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items()), "nothing half-loaded"


def test_missing_tensors_are_named(tmp_path: Path) -> None:
    path = write(tmp_path / "w.safetensors", tensors_of(model(), drop=("head.weight", "norm.bias", "scale")))
    with pytest.raises(ValueError) as info:
        load_weights(model(), path)
    assert str(info.value) == f"weights {path}: 2 tensor(s) missing from the file: scale, norm.bias"


def test_unexpected_tensors_are_named_up_to_three(tmp_path: Path) -> None:
    extra = {f"extra.{i}": torch.zeros(1) for i in range(5)}
    path = write(tmp_path / "w.safetensors", tensors_of(model()) | extra)
    with pytest.raises(ValueError) as info:
        load_weights(model(), path)
    assert str(info.value) == (
        f"weights {path}: 5 tensor(s) the model does not have: extra.0, extra.1, extra.2 and 2 more"
    )


def test_a_file_that_is_not_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\x80\x04not safetensors at all")  # e.g. a pickle renamed
    with pytest.raises(ValueError, match=r"not a safetensors file \(") as info:
        load_weights(model(), str(path))
    assert str(info.value).startswith(f"weights {path}: ") and "\n" not in str(info.value)


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.safetensors"
    with pytest.raises(ValueError, match=r"^weights .*nope\.safetensors: no such file$"):
        load_weights(model(), str(path))


def test_without_safetensors_the_error_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(ValueError, match=r"^--weights needs safetensors: pip install 'genbench\[hf\]'$"):
        load_weights(model(), str(tmp_path / "w.safetensors"))

"""Bring-your-own-model loading: a module in the working directory becomes a ModelSpec.

Each test writes its user module to a fresh tmp_path and runs from there; the
fixture restores sys.path and sys.modules so one test's ``mymod`` never leaks
into the next.
"""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from reference_models.causal_lm import interface_problem
from reference_models.custom import load_factory
from reference_models.hf import TransformersCausalLM
from reference_models.spec import ModelSpec

USER_MODULE = """
import torch
from torch import nn

NOT_CALLABLE = 3


def make():
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))
    return module, lambda batch_size: (torch.randn(batch_size, 4),)


def make_bare_tensor():
    return nn.Linear(4, 2), lambda batch_size: torch.randn(batch_size, 4)


def only_module():
    return nn.Linear(4, 2)


def not_a_module():
    return object(), lambda batch_size: (torch.randn(batch_size, 4),)


def inputs_not_callable():
    return nn.Linear(4, 2), 5


def raises():
    raise RuntimeError("no weights here\\nsecond line")


def bad_inputs():
    return nn.Linear(4, 2), lambda batch_size: "not tensors"
"""


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """Run from tmp_path with sys.path/sys.modules restored afterwards; returns a file writer."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)

    def write(relpath: str, source: str) -> None:
        path = tmp_path / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))

    write("mymod.py", USER_MODULE)
    yield write
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_loads_module_from_working_directory(user_dir: Callable[[str, str], None]) -> None:
    spec = load_factory("mymod:make")
    assert (spec.name, spec.family, spec.item, spec.sizes) == ("mymod:make", "custom", "item", ("custom",))
    spec.check_size("custom")

    before = torch.get_rng_state()
    module = spec.build("custom")
    assert torch.equal(before, torch.get_rng_state()), "build must not disturb the caller's RNG"
    assert not module.training  # eval mode: the Dropout is off, so the forward is deterministic

    (x,) = spec.example_inputs(3, "custom", 0)
    assert x.shape == (3, 4)
    with torch.inference_mode():
        out = module(x)
        assert out.shape == (3, 2)
        assert torch.equal(out, module(x))


def test_builds_are_identical_independent_copies(user_dir: Callable[[str, str], None]) -> None:
    spec = load_factory("mymod:make")
    a, b = spec.build("custom"), spec.build("ignored")  # the size is ignored
    assert a is not b
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with torch.no_grad():
        next(a.parameters()).add_(1.0)
    assert not torch.equal(next(a.parameters()), next(b.parameters()))
    assert torch.equal(next(b.parameters()), next(spec.build("custom").parameters()))


def test_example_inputs_are_seeded(user_dir: Callable[[str, str], None]) -> None:
    spec = load_factory("mymod:make")
    before = torch.get_rng_state()
    first = spec.example_inputs(2, "custom", 0)
    assert torch.equal(before, torch.get_rng_state()), "inputs must not disturb the caller's RNG"
    assert torch.equal(first[0], spec.example_inputs(2, "custom", 0)[0])
    assert not torch.equal(first[0], spec.example_inputs(2, "custom", 1)[0])


def test_bare_tensor_from_make_inputs_becomes_a_tuple(user_dir: Callable[[str, str], None]) -> None:
    inputs = load_factory("mymod:make_bare_tensor").example_inputs(2, "custom", 0)
    assert isinstance(inputs, tuple) and len(inputs) == 1 and inputs[0].shape == (2, 4)


def test_module_inside_a_package(user_dir: Callable[[str, str], None]) -> None:
    user_dir("userpkg/__init__.py", "")
    user_dir(
        "userpkg/models.py",
        """
        import torch
        from torch import nn

        def factory():
            return nn.Conv2d(3, 4, 3), lambda b: (torch.randn(b, 3, 8, 8),)
        """,
    )
    spec = load_factory("userpkg.models:factory")
    (x,) = spec.example_inputs(2, "custom", 0)
    assert spec.build("custom")(x).shape == (2, 4, 6, 6)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("mymod", r"must look like 'package\.module:factory'"),
        ("mymod.make", r"must look like 'package\.module:factory'"),
        (":make", r"must look like 'package\.module:factory'"),
        ("mymod:", r"must look like 'package\.module:factory'"),
        ("no_such_module_xyz:make", r"cannot import 'no_such_module_xyz' \(ModuleNotFoundError: "),
        ("broken:make", r"cannot import 'broken' \(ZeroDivisionError: division by zero\)"),
        ("mymod:missing", r"module 'mymod' has no attribute 'missing'"),
        ("mymod:NOT_CALLABLE", r"'NOT_CALLABLE' is a int, not a callable factory"),
        ("mymod:only_module", r"factory must return \(module, make_inputs\), got Linear"),
        ("mymod:not_a_module", r"factory's first item is a object, not an nn\.Module"),
        ("mymod:inputs_not_callable", r"second item \(make_inputs\) is a int, not a callable"),
        ("mymod:raises", r"factory raised RuntimeError: no weights here$"),
    ],
)
def test_bad_paths_are_one_line_value_errors(
    user_dir: Callable[[str, str], None], path: str, message: str
) -> None:
    user_dir("broken.py", "x = 1 / 0\n")
    with pytest.raises(ValueError, match=message) as info:
        load_factory(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"custom model {path!r}")


def test_make_inputs_returning_junk_is_a_value_error(user_dir: Callable[[str, str], None]) -> None:
    spec = load_factory("mymod:bad_inputs")
    with pytest.raises(ValueError, match=r"make_inputs must return a tuple of tensors, got str"):
        spec.example_inputs(2, "custom", 0)


# --- factories returning a causal LM (workload "generate")

LM_MODULE = """
import torch
from torch import nn


class ToyLM(nn.Module):
    \"\"\"The causal-LM interface at its smallest: logits from an embedding, a cache of nothing.\"\"\"

    vocab_size = 50
    max_seq_len = 32

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 50)

    def kv_shape(self):
        from reference_models.causal_lm import KVShape

        return KVShape(layers=1, kv_heads=1, head_dim=1)

    def setup_cache(self, batch_size, max_len, kind):
        pass

    def reset_cache(self):
        pass

    def cache_bytes(self):
        return 0

    def forward(self, tokens, input_pos=None):
        return self.emb(tokens)


class HalfLM(nn.Module):
    vocab_size = 50

    def forward(self, tokens):
        return tokens


def own_lm():
    return ToyLM()


def half_lm():
    return HalfLM()


def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=128, max_position_embeddings=64,
    )
    return LlamaForCausalLM(config)
"""


@pytest.fixture
def transformers_first() -> None:
    """Import transformers' Llama before ``user_dir`` snapshots sys.modules, so the fixture never unloads it."""
    transformers = pytest.importorskip("transformers")
    assert transformers.LlamaForCausalLM.__name__ == "LlamaForCausalLM"  # its lazy package imports it now


@pytest.fixture
def lm_dir(transformers_first: None, user_dir: Callable[[str, str], None]) -> Callable[[str, str], None]:
    user_dir("lms.py", LM_MODULE)
    return user_dir


def assert_generate_spec(spec: ModelSpec, name: str, vocab: int) -> None:
    assert (spec.name, spec.family, spec.item, spec.workload, spec.sizes) == (
        name,
        "transformer",
        "token",
        "generate",
        ("custom",),
    )
    before = torch.get_rng_state()
    (prompt,) = spec.example_inputs(2, "custom", 0)
    assert torch.equal(before, torch.get_rng_state()), "inputs must not disturb the caller's RNG"
    assert prompt.shape == (2, 16) and prompt.dtype == torch.int64
    assert int(prompt.min()) >= 0 and int(prompt.max()) < vocab
    assert torch.equal(prompt, spec.example_inputs(2, "custom", 0)[0])
    assert not torch.equal(prompt, spec.example_inputs(2, "custom", 1)[0])


def test_factory_returning_a_transformers_causal_lm(lm_dir: Callable[[str, str], None]) -> None:
    spec = load_factory("lms:llama")
    assert_generate_spec(spec, "lms:llama", vocab=128)
    assert "LlamaForCausalLM" in spec.description
    a, b = spec.build("custom"), spec.build("custom")
    assert isinstance(a, TransformersCausalLM) and interface_problem(a) is None and not a.training
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa), "seeded builds repeat"
    (prompt,) = spec.example_inputs(2, "custom", 0)
    with torch.inference_mode():
        assert a(prompt).shape == (2, 16, 128)


def test_factory_returning_its_own_causal_lm(lm_dir: Callable[[str, str], None]) -> None:
    spec = load_factory("lms:own_lm")
    assert_generate_spec(spec, "lms:own_lm", vocab=50)
    module = spec.build("custom")
    assert type(module).__name__ == "ToyLM" and not module.training  # not wrapped
    assert torch.equal(module.emb.weight, spec.build("custom").emb.weight)


@pytest.mark.parametrize(
    ("path", "missing"),
    [
        (
            "mymod:only_module",
            "missing vocab_size, max_seq_len, kv_shape, setup_cache, reset_cache, cache_bytes$",
        ),
        ("lms:half_lm", "missing max_seq_len, kv_shape, setup_cache, reset_cache, cache_bytes$"),
    ],
)
def test_a_lone_module_that_is_no_causal_lm_says_what_is_missing(
    lm_dir: Callable[[str, str], None], path: str, missing: str
) -> None:
    with pytest.raises(ValueError) as info:
        load_factory(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"custom model {path!r}: factory must return (module, make_inputs), got ")
    assert "a forward model returns (module, make_inputs), a causal LM the model alone; " in text
    assert re.search(missing, text), text

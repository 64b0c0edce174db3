"""Bring your own model: turn ``"pkg.module:factory"`` into a :class:`ModelSpec`.

A forward model's ``factory()`` returns ``(module, make_inputs)`` where
``make_inputs(batch_size)`` returns the tuple of positional input tensors for one
forward call. The spec calls the factory afresh on every build (seeded, so random
weights repeat and builds are independent copies), and runs ``make_inputs`` under a
forked RNG seeded per call, so the user's inputs are as reproducible as the
reference models' without the user's code knowing about seeds.

A causal LM's ``factory()`` returns the model alone: a transformers causal LM
(wrapped in reference_models.hf.TransformersCausalLM) or an ``nn.Module`` with the
causal-LM interface (reference_models.causal_lm). Its spec times a whole generation
(workload ``generate``) from seeded prompts of ``PROMPT_TOKENS`` token ids.

Every way the path can be wrong is reported as a one-line ``ValueError`` naming
the problem, because this string comes straight from the command line.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from reference_models.lm_spec import CUSTOM_SIZE, generate_spec
from reference_models.spec import ModelSpec, build_seeded, error_line

_BUILD_SEED = 0

MakeInputs = Callable[[int], Any]


def _resolve(path: str) -> Callable[[], Any]:
    """Import ``module`` and fetch the callable ``factory`` named by ``module:factory``."""
    module_name, sep, attr = path.partition(":")
    module_name, attr = module_name.strip(), attr.strip()
    if not sep or not module_name or not attr:
        raise ValueError(f"custom model {path!r} must look like 'package.module:factory'")
    # Let users point at a module in the directory they run from, as `python -m` would.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()  # files written since the last import must be seen
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # sys.exit() at import is a bad model, not the end of the run
        raise ValueError(f"custom model {path!r}: cannot import {module_name!r} ({error_line(exc)})") from exc
    try:
        factory = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"custom model {path!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(factory):
        raise ValueError(
            f"custom model {path!r}: {attr!r} is a {type(factory).__name__}, not a callable factory"
        )
    return factory


def _run_factory(path: str, factory: Callable[[], Any]) -> Any:
    """Call the factory, turning anything it raises into a one-line ``ValueError``."""
    try:
        return factory()
    except (Exception, SystemExit) as exc:
        raise ValueError(f"custom model {path!r}: factory raised {error_line(exc)}") from exc


def _check_forward_model(path: str, result: Any) -> tuple[nn.Module, MakeInputs]:
    """Check the factory returned ``(nn.Module, callable)``."""
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ValueError(
            f"custom model {path!r}: factory must return (module, make_inputs), got {type(result).__name__}"
        )
    module, make_inputs = result
    if not isinstance(module, nn.Module):
        raise ValueError(
            f"custom model {path!r}: factory's first item is a {type(module).__name__}, not an nn.Module"
        )
    if not callable(make_inputs):
        raise ValueError(
            f"custom model {path!r}: factory's second item (make_inputs) is a {type(make_inputs).__name__}, "
            "not a callable"
        )
    return module, make_inputs


def _call_factory(path: str, factory: Callable[[], Any]) -> tuple[nn.Module, MakeInputs]:
    """Call the factory and check it returned ``(nn.Module, callable)``."""
    return _check_forward_model(path, _run_factory(path, factory))


def _as_causal_lm(path: str, result: Any) -> nn.Module:
    """A factory's single result as a causal LM: a transformers one is wrapped, ours is checked.

    A single ``nn.Module`` that is neither is most likely a forward model missing its
    ``make_inputs``, so the error names both ways out.
    """
    from reference_models.causal_lm import interface_problem
    from reference_models.hf import TransformersCausalLM, is_transformers_causal_lm

    if is_transformers_causal_lm(result):
        return TransformersCausalLM(result)
    problem = interface_problem(result)
    if problem is None:
        return result
    raise ValueError(
        f"custom model {path!r}: factory must return (module, make_inputs), got {type(result).__name__}: "
        f"a forward model returns (module, make_inputs), a causal LM the model alone; {problem}"
    )


def _check_inputs(path: str, inputs: Any) -> tuple[torch.Tensor, ...]:
    """Accept a tuple/list of tensors (or one bare tensor) and return a tuple."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    if isinstance(inputs, tuple | list) and inputs and all(isinstance(t, torch.Tensor) for t in inputs):
        return tuple(inputs)
    raise ValueError(
        f"custom model {path!r}: make_inputs must return a tuple of tensors, got {type(inputs).__name__}"
    )


def _causal_lm_spec(path: str, factory: Callable[[], Any], model: nn.Module) -> ModelSpec:
    """The generate spec of a factory whose first call returned the causal LM ``model``."""
    vocab_size = model.vocab_size
    if not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"custom model {path!r}: vocab_size must be a positive int, got {vocab_size!r}")

    def build(size: str) -> nn.Module:
        # The size is ignored: a custom model has exactly one.
        return build_seeded(lambda: _as_causal_lm(path, _run_factory(path, factory)), seed=_BUILD_SEED)

    from reference_models.hf import TransformersCausalLM

    wrapped = f" ({type(model.model).__name__})" if isinstance(model, TransformersCausalLM) else ""
    context = model.max_seq_len if isinstance(model.max_seq_len, int) else None
    return generate_spec(
        name=path,
        build=build,
        vocab_size=vocab_size,
        description=f"user causal LM{wrapped} from {path}",
        context=context,
    )


def load_factory(path: str) -> ModelSpec:
    """Load ``"pkg.module:factory"`` as a one-size (``"custom"``) :class:`ModelSpec`.

    The factory is called once here, seeded and with the caller's RNG left
    alone, so a bad path or a factory returning the wrong thing fails now, at
    argument parsing, rather than halfway through a benchmark. Only
    ``make_inputs`` from that call is kept; the module is dropped and every
    ``build`` makes a new one. A factory returning one object (not a tuple) that is
    an ``nn.Module`` is taken as a causal LM (see the module docstring).
    """
    factory = _resolve(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_BUILD_SEED)
        result = _run_factory(path, factory)
        if isinstance(result, nn.Module):
            return _causal_lm_spec(path, factory, _as_causal_lm(path, result))
        _, make_inputs = _check_forward_model(path, result)

    def build(size: str) -> nn.Module:
        # The size is ignored: a custom model has exactly one.
        return build_seeded(lambda: _call_factory(path, factory)[0], seed=_BUILD_SEED)

    def example_inputs(batch_size: int, size: str, seed: int) -> tuple[torch.Tensor, ...]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                inputs = make_inputs(batch_size)
            except (Exception, SystemExit) as exc:
                raise ValueError(f"custom model {path!r}: make_inputs raised {error_line(exc)}") from exc
        return _check_inputs(path, inputs)

    return ModelSpec(
        name=path,
        family="custom",
        item="item",
        build=build,
        example_inputs=example_inputs,
        sizes=(CUSTOM_SIZE,),
        description=f"user model from {path}",
    )

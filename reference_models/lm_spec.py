"""The spec of a user's causal LM, one timed call a whole generation: shared by ``pkg.mod:factory`` models
(reference_models.custom) and ``hf:`` folders (reference_models.hf), so neither imports the other for it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from reference_models.spec import ModelSpec, seeded_generator

#: the one size of a user's model
CUSTOM_SIZE = "custom"
#: the prompt length of a user causal LM's example inputs
PROMPT_TOKENS = 16


def generate_spec(
    name: str,
    build: Callable[[str], nn.Module],
    vocab_size: int,
    description: str,
    context: int | None = None,
) -> ModelSpec:
    """A one-size (``"custom"``) spec of a user's causal LM: one timed call is a whole generation.

    ``example_inputs`` is the prompt alone: int64 token ids [batch, PROMPT_TOKENS],
    uniform below ``vocab_size`` from a generator seeded per call (the caller's RNG
    is left alone).
    """
    if vocab_size < 1:
        raise ValueError(f"model {name!r}: vocab_size must be at least 1, got {vocab_size}")

    def example_inputs(batch_size: int, size: str, seed: int) -> tuple[torch.Tensor, ...]:
        prompt = torch.randint(
            0, vocab_size, (batch_size, PROMPT_TOKENS), generator=seeded_generator(seed), dtype=torch.int64
        )
        return (prompt,)

    return ModelSpec(
        name=name,
        family="transformer",
        item="token",
        build=build,
        example_inputs=example_inputs,
        sizes=(CUSTOM_SIZE,),
        description=description,
        workload="generate",
        context_length=(lambda size: context) if context is not None else None,
    )

"""The one description every model in genbench shares, reference or user-supplied.

A spec is pure data plus two callables: the runner never needs to know which
architecture it is timing, only how to build it and how to feed it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

SIZES: tuple[str, ...] = ("tiny", "small", "base")
#: what one measured call of a model is: one forward call (``forward``), a whole text generation
#: (``generate``: prefill + greedy decode, bench.workloads.generate), or a whole diffusion sampling
#: run (``sample``: the sampler's UNet steps + the VAE decode, bench.workloads.sample)
WORKLOADS: tuple[str, ...] = ("forward", "generate", "sample")


@dataclass(frozen=True)
class ModelSpec:
    """How to build a generative model and make inputs for one forward call.

    ``build(size)`` returns a fresh fp32 module in eval mode with seeded weights,
    so two calls give identical modules (fidelity compares against that).
    ``example_inputs(batch_size, size, seed)`` returns the positional inputs of
    one forward call; the same arguments give the same tensors. ``workload`` says
    what one timed call is (``WORKLOADS``): a ``generate`` model's module follows
    the causal-LM interface (reference_models.causal_lm), a ``sample`` model's is
    a latent-diffusion pipeline (reference_models.ldm) whose ``example_inputs`` are
    the starting noise and the class labels.
    """

    name: str
    family: str  # "gan" | "vae" | "diffusion" | "custom"
    item: str  # throughput unit, e.g. "image", "denoise-step"
    build: Callable[[str], nn.Module]
    example_inputs: Callable[[int, str, int], tuple[torch.Tensor, ...]]
    sizes: tuple[str, ...] = SIZES
    description: str = ""
    workload: str = "forward"
    #: a generate model's context in tokens at a size, known without building it (None: found at build)
    context_length: Callable[[str], int] | None = None

    def __post_init__(self) -> None:
        if self.workload not in WORKLOADS:
            raise ValueError(f"model {self.name!r}: workload must be one of {', '.join(WORKLOADS)}")

    def check_size(self, size: str) -> None:
        if size not in self.sizes:
            raise ValueError(f"model {self.name!r} has no size {size!r}; choose from {', '.join(self.sizes)}")


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator so inputs are identical whatever device runs them."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return gen


def build_seeded(factory: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """Build a module under a fixed seed without disturbing the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = factory()
    return module.eval()


def error_line(exc: BaseException) -> str:
    """An exception as ``Type: first line``, so the errors a user's model causes stay one line."""
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r})"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__

"""The causal-LM interface ("gpt interface"): what the generate workload needs from a language model.

The harness's generate workload (bench.workloads.generate) sees a model only through
:class:`CausalLM`, so the reference ``gpt`` (reference_models.gpt), a user's own
module (``--model pkg.module:factory``) and an adapter around a transformers model
all run the same prefill + greedy-decode loop, timed the same way. A module that
has every member below, with these meanings, can be benchmarked; nothing has to
inherit from anything (the protocol is structural).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

#: the two KV-cache forms ``setup_cache`` accepts
CACHE_KINDS: tuple[str, ...] = ("static", "dynamic")


@dataclass(frozen=True)
class KVShape:
    """The per-token shape of a model's KV cache: ``layers`` x (K and V) x ``kv_heads`` x ``head_dim``.

    The harness uses it to say how big a cache will be before allocating one
    (``bytes_for``), and to check what ``cache_bytes`` measures against it.
    """

    layers: int
    kv_heads: int
    head_dim: int

    def bytes_for(self, tokens: int, batch: int, element_size: int) -> int:
        """Bytes of K and V for ``tokens`` positions of ``batch`` sequences at ``element_size`` bytes each."""
        return 2 * self.layers * self.kv_heads * self.head_dim * element_size * tokens * batch


@runtime_checkable
class CausalLM(Protocol):
    """A decoder-only language model with a KV cache it owns, as the generate workload drives it.

    The loop the harness runs, for a prompt ``prompt`` (int64 [B, P]) and ``N`` new tokens::

        model.setup_cache(B, P + N, kind)       # once per shape; again only resets
        model.reset_cache()                     # each generation starts a new sequence
        pos = torch.arange(P, device=device)
        logits = model(prompt, pos)             # prefill: writes P positions of K/V
        token = logits[:, -1].argmax(-1)        # greedy
        for i in range(P, P + N - 1):
            logits = model(token[:, None], torch.tensor([i], device=device))   # decode one
            token = logits[:, -1].argmax(-1)

    and, for fidelity, ``model(tokens)`` (no ``input_pos``): one full causal forward
    over teacher-forced tokens, which must give the same logits as the cached loop.

    Attributes:
        vocab_size: the number of token ids; logits have this last dimension.
        max_seq_len: the context length. A prompt plus new tokens longer than this
            is refused by the harness with a one-line error, before anything runs.

    Methods:
        kv_shape(): the cache's per-token shape (:class:`KVShape`).
        setup_cache(batch_size, max_len, kind): allocate a cache for ``batch_size``
            sequences of up to ``max_len`` positions. ``kind`` is one of
            ``CACHE_KINDS``: ``"static"`` preallocates K and V of
            [batch, kv_heads, max_len, head_dim] per layer, in the dtype and on the
            device of the model's floating-point weights, written in place (fixed
            shapes and addresses, so torch.compile and CUDA graphs see the same
            tensors every step); ``"dynamic"`` starts empty and grows by
            concatenation each step (what eager Hugging Face generation does).
            Calling it again with the same (batch_size, max_len, kind), while the
            weights' dtype and device are unchanged, only resets the cache (no
            reallocation); anything else reallocates. An unknown ``kind`` is a
            one-line ``ValueError``.
        reset_cache(): start a new sequence: a static cache keeps its tensors
            (no reallocation), a dynamic one goes back to empty.
        cache_bytes(): the bytes the cache's tensors hold now, measured from the
            tensors themselves (numel x element_size), not computed from the config:
            for a static cache the whole preallocation, for a dynamic one what has
            been written so far.
        forward(tokens, input_pos=None): ``tokens`` int64 [B, T] to logits, a
            floating-point [B, T, vocab_size] (the model's dtype; the harness casts
            what it compares). With ``input_pos`` None: a full causal forward over
            ``tokens`` that neither reads nor writes the cache (teacher forcing,
            fidelity references). With ``input_pos`` (int64 [T] on the model's
            device, the absolute positions of these T tokens): attend over the
            cache plus these tokens and write their K/V into it (prefill:
            ``arange(P)``; decode: a one-element tensor ``[pos]``). Positions must
            continue the sequence the cache holds, and stay below the ``max_len``
            given to ``setup_cache``.
    """

    vocab_size: int
    max_seq_len: int

    def kv_shape(self) -> KVShape: ...

    def setup_cache(self, batch_size: int, max_len: int, kind: str) -> None: ...

    def reset_cache(self) -> None: ...

    def cache_bytes(self) -> int: ...

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor: ...


#: the members ``interface_problem`` checks: (name, must be callable)
_MEMBERS: tuple[tuple[str, bool], ...] = (
    ("vocab_size", False),
    ("max_seq_len", False),
    ("kv_shape", True),
    ("setup_cache", True),
    ("reset_cache", True),
    ("cache_bytes", True),
    ("forward", True),
)


def interface_problem(module: object) -> str | None:
    """None if ``module`` has every :class:`CausalLM` member, else one line naming what is missing.

    The one line is for the command line: a user's module that does not follow
    the interface is told which members it lacks, not handed an AttributeError
    from the middle of the generate loop.
    """
    missing = [name for name, _ in _MEMBERS if not hasattr(module, name)]
    not_callable = [name for name, must in _MEMBERS if must and hasattr(module, name)]
    not_callable = [name for name in not_callable if not callable(getattr(module, name))]
    not_int = [
        name
        for name, must in _MEMBERS
        if not must and hasattr(module, name) and not isinstance(getattr(module, name), int)
    ]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if not_callable:
        problems.append(f"not callable: {', '.join(not_callable)}")
    if not_int:
        problems.append(f"not an int: {', '.join(not_int)}")
    if not problems:
        return None
    kind = type(module).__name__
    return (
        f"{kind} does not follow the causal-LM interface (reference_models.causal_lm): {'; '.join(problems)}"
    )

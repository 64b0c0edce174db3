"""A decoder-only Transformer (Llama layout) with a KV cache in two forms: the ``gpt`` reference model.

Pre-norm blocks of RMSNorm, grouped-query attention with rotary position
embeddings, and a SwiGLU MLP; no biases. ``small`` is GPT-2-small scale (~114M
parameters), ``base`` the TinyLlama-1.1B layout (~1.1B). Parameter names follow
Meta's Llama / gpt-fast (``tok_embeddings``, ``layers.i.attention.wq``,
``feed_forward.w1``, ``norm``, ``output``), and rotary embeddings rotate halves as
Hugging Face's Llama does, so a real checkpoint maps onto it name for name.

The model follows the causal-LM interface (reference_models.causal_lm): it owns
its KV cache (``setup_cache``: static or dynamic, reference_models.kv_cache), and
``forward(tokens, input_pos)`` either runs a full causal pass (``input_pos`` None)
or attends over the cache and writes into it. ``forward`` never branches in
Python on tensor values, so with a static cache one decode step compiles to one
graph (``torch.compile(fullgraph=True)``) that every later step reuses.

Weights are random (seeded): normal(0, 0.02) for every Linear and the embedding,
as GPT-2 does, with the residual projections (``wo``, ``w2``) scaled by
``1/sqrt(2 * layers)`` so the residual stream does not grow with depth. Random
weights give near-flat next-token distributions (logits of std ~0.2-0.6), whose
argmax flips at the slightest rounding; real checkpoints give real fidelity.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reference_models.causal_lm import CACHE_KINDS, KVShape
from reference_models.kv_cache import DynamicKVCache, StaticKVCache
from reference_models.spec import ModelSpec, build_seeded, seeded_generator

ROPE_THETA = 10000.0
NORM_EPS = 1e-5
INIT_STD = 0.02
EXAMPLE_PROMPT_LEN = 16

KVCache = StaticKVCache | DynamicKVCache


@dataclass(frozen=True)
class GPTConfig:
    """One size of the model. ``n_kv_heads < n_heads`` is grouped-query attention."""

    n_layers: int
    dim: int
    n_heads: int
    n_kv_heads: int
    hidden_dim: int  # the SwiGLU MLP's inner width
    vocab_size: int
    max_seq_len: int
    tie_embeddings: bool

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not a multiple of n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for rotary embeddings")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


class RMSNorm(nn.Module):
    """RMSNorm computed in fp32 and cast back, so a bf16 model's statistics are not bf16-rounded."""

    def __init__(self, dim: int, eps: float = NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def rope_tables(max_seq_len: int, head_dim: int, device: torch.device | None = None) -> torch.Tensor:
    """fp32 cos and sin of every position's rotation angles, stacked: [2, max_seq_len, head_dim // 2]."""
    inv_freq = 1.0 / ROPE_THETA ** (
        torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim
    )
    angles = torch.arange(max_seq_len, dtype=torch.float32, device=device)[:, None] * inv_freq[None, :]
    return torch.stack([angles.cos(), angles.sin()])


class RotaryEmbedding(nn.Module):
    """Rotary position embeddings (theta 10000) with fp32 tables that stay fp32.

    The tables are non-persistent buffers, so ``.to(device)`` moves them and
    ``state_dict`` never holds them. ``.to(torch.bfloat16)`` would also round
    them to bf16, losing the phase of far positions, so ``_apply`` (what every
    ``to``/``half``/``cuda`` goes through) rebuilds them in fp32 on the new device.
    """

    tables: torch.Tensor

    def __init__(self, max_seq_len: int, head_dim: int) -> None:
        super().__init__()
        self.max_seq_len = max_seq_len
        self.head_dim = head_dim
        self.register_buffer("tables", rope_tables(max_seq_len, head_dim), persistent=False)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> RotaryEmbedding:
        super()._apply(fn, recurse)
        self.tables = rope_tables(self.max_seq_len, self.head_dim, device=self.tables.device)
        return self

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` [B, H, T, D] by the angles of ``positions`` [T], in fp32, cast back to x's dtype."""
        cos, sin = self.tables[0][positions], self.tables[1][positions]  # [T, D/2] each
        xf = x.float()
        x1, x2 = xf.chunk(2, dim=-1)
        rotated = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
        return rotated.type_as(x)


class Attention(nn.Module):
    """Grouped-query self-attention through ``scaled_dot_product_attention``.

    GQA uses SDPA's ``enable_gqa=True`` rather than repeating K/V: checked on CPU
    with torch 2.13, with a boolean mask and with ``is_causal``, in fp32 and
    bf16, it equals an explicit ``repeat_interleave`` exactly (and the test keeps
    checking), and it spares the repeated copies of the cache.
    """

    def __init__(self, config: GPTConfig, layer_id: int) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.n_heads = config.n_heads
        self.n_kv_heads = config.n_kv_heads
        self.head_dim = config.head_dim
        self.wq = nn.Linear(config.dim, config.n_heads * config.head_dim, bias=False)
        self.wk = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.wv = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.wo = nn.Linear(config.n_heads * config.head_dim, config.dim, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        rope: RotaryEmbedding,
        positions: torch.Tensor,
        cache: KVCache | None,
    ) -> torch.Tensor:
        batch, seq, _ = x.shape
        q = self.wq(x).view(batch, seq, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = rope(q, positions), rope(k, positions)
        if cache is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            k_all, v_all = cache.update(self.layer_id, positions, k, v)
            mask = cache.mask(positions, k_all.shape[2])
            out = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask, enable_gqa=True)
        return self.wo(out.transpose(1, 2).reshape(batch, seq, self.n_heads * self.head_dim))


class FeedForward(nn.Module):
    """SwiGLU: ``w2(silu(w1 x) * w3 x)`` (w1 gate, w3 up, w2 down)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(config.dim, config.hidden_dim, bias=False)
        self.w3 = nn.Linear(config.dim, config.hidden_dim, bias=False)
        self.w2 = nn.Linear(config.hidden_dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm: ``x + attention(norm(x))``, then ``+ feed_forward(norm(.))``."""

    def __init__(self, config: GPTConfig, layer_id: int) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(config.dim)
        self.attention = Attention(config, layer_id)
        self.ffn_norm = RMSNorm(config.dim)
        self.feed_forward = FeedForward(config)

    def forward(
        self, x: torch.Tensor, rope: RotaryEmbedding, positions: torch.Tensor, cache: KVCache | None
    ) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), rope, positions, cache)
        return h + self.feed_forward(self.ffn_norm(h))


class GPT(nn.Module):
    """``forward(tokens [B, T] int64, input_pos [T] | None) -> logits [B, T, vocab]`` (causal-LM interface).

    Constructible under ``with torch.device("meta"):`` (nothing reads a tensor's
    values at construction), so the large sizes can be counted without memory.
    """

    CONFIGS: dict[str, GPTConfig] = {
        "tiny": GPTConfig(
            n_layers=2, dim=64, n_heads=4, n_kv_heads=2, hidden_dim=128, vocab_size=256, max_seq_len=128,
            tie_embeddings=True,
        ),
        "small": GPTConfig(
            n_layers=12, dim=768, n_heads=12, n_kv_heads=4, hidden_dim=2048, vocab_size=50257,
            max_seq_len=1024, tie_embeddings=True,
        ),
        "base": GPTConfig(
            n_layers=22, dim=2048, n_heads=32, n_kv_heads=4, hidden_dim=5632, vocab_size=32000,
            max_seq_len=2048, tie_embeddings=False,
        ),
    }  # fmt: skip

    kv_cache: KVCache | None

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.vocab_size = config.vocab_size
        self.max_seq_len = config.max_seq_len
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.dim)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        self.rope = RotaryEmbedding(config.max_seq_len, config.head_dim)
        self.register_module("kv_cache", None)
        self._cache_key: tuple[int, int, str, torch.dtype, torch.device] | None = None
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2's init: normal(0, 0.02), residual projections by 1/sqrt(2 * layers); in module order."""
        residual_std = INIT_STD / math.sqrt(2 * self.config.n_layers)
        nn.init.normal_(self.tok_embeddings.weight, std=INIT_STD)
        for layer in self.layers:
            for linear in (layer.attention.wq, layer.attention.wk, layer.attention.wv):
                nn.init.normal_(linear.weight, std=INIT_STD)
            nn.init.normal_(layer.attention.wo.weight, std=residual_std)
            nn.init.normal_(layer.feed_forward.w1.weight, std=INIT_STD)
            nn.init.normal_(layer.feed_forward.w3.weight, std=INIT_STD)
            nn.init.normal_(layer.feed_forward.w2.weight, std=residual_std)
        if not self.config.tie_embeddings:
            nn.init.normal_(self.output.weight, std=INIT_STD)

    # --- the causal-LM interface -------------------------------------------------------------

    def kv_shape(self) -> KVShape:
        return KVShape(self.config.n_layers, self.config.n_kv_heads, self.config.head_dim)

    def _weights_dtype_device(self) -> tuple[torch.dtype, torch.device]:
        """The dtype and device of the first floating-point parameter (the embedding's)."""
        for param in self.parameters():
            if param.is_floating_point():
                return param.dtype, param.device
        raise ValueError("GPT has no floating-point parameter to take the cache's dtype from")

    def setup_cache(self, batch_size: int, max_len: int, kind: str) -> None:
        """Allocate a ``kind`` cache for ``batch_size`` x ``max_len``; the same request again only resets it."""
        if kind not in CACHE_KINDS:
            raise ValueError(f"unknown KV cache kind {kind!r}; choose from {', '.join(CACHE_KINDS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 1 <= max_len <= self.max_seq_len:
            raise ValueError(f"cache max_len must be in 1..{self.max_seq_len} (max_seq_len), got {max_len}")
        dtype, device = self._weights_dtype_device()
        key = (batch_size, max_len, kind, dtype, device)
        if self.kv_cache is not None and key == self._cache_key_now():
            self.kv_cache.reset()
            return
        cfg = self.config
        if kind == "static":
            self.kv_cache = StaticKVCache(
                cfg.n_layers, batch_size, cfg.n_kv_heads, max_len, cfg.head_dim, dtype, device
            )
        else:
            self.kv_cache = DynamicKVCache(cfg.n_layers, batch_size, max_len)
        self._cache_key = key

    def _cache_key_now(self) -> tuple[int, int, str, torch.dtype, torch.device] | None:
        """The cache's (batch, max_len, kind, dtype, device) as it is now.

        A static cache's buffers move and cast with the model, so its dtype and
        device are read from the buffers; a dynamic one holds no tensors between
        sequences, so its setup-time key stands.
        """
        cache = self.kv_cache
        if isinstance(cache, StaticKVCache):
            return (cache.batch_size, cache.max_len, "static", cache.k.dtype, cache.k.device)
        return self._cache_key

    def reset_cache(self) -> None:
        if self.kv_cache is None:
            raise ValueError("no KV cache to reset: call setup_cache(batch_size, max_len, kind) first")
        self.kv_cache.reset()

    def cache_bytes(self) -> int:
        return 0 if self.kv_cache is None else self.kv_cache.nbytes()

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [batch, seq] token ids, got shape {tuple(tokens.shape)}")
        seq = tokens.shape[1]
        if seq > self.max_seq_len:
            raise ValueError(f"{seq} tokens exceed max_seq_len {self.max_seq_len}")
        cache: KVCache | None
        if input_pos is None:
            positions, cache = torch.arange(seq, device=tokens.device), None
        else:
            if self.kv_cache is None:
                raise ValueError("forward with input_pos needs a KV cache: call setup_cache first")
            if input_pos.shape != (seq,):
                raise ValueError(f"input_pos must be [{seq}] positions, got shape {tuple(input_pos.shape)}")
            positions, cache = input_pos, self.kv_cache
        x = self.tok_embeddings(tokens)
        for layer in self.layers:
            x = layer(x, self.rope, positions, cache)
        return self.output(self.norm(x))


def build(size: str) -> GPT:
    """A fresh, seeded fp32 GPT in eval mode; equal sizes give equal weights."""
    GPT_SPEC.check_size(size)
    config = GPT.CONFIGS[size]
    model = build_seeded(lambda: GPT(config), seed=0)
    assert isinstance(model, GPT)
    return model


def example_inputs(batch_size: int, size: str, seed: int) -> tuple[torch.Tensor, ...]:
    """``(prompt,)``: int64 [batch, 16] token ids uniform over the vocabulary, seeded.

    For generic callers; the generate workload makes its own prompts of ``--prompt-len``.
    """
    GPT_SPEC.check_size(size)
    config = GPT.CONFIGS[size]
    gen = seeded_generator(seed)
    prompt = torch.randint(0, config.vocab_size, (batch_size, EXAMPLE_PROMPT_LEN), generator=gen)
    return (prompt,)


GPT_SPEC = ModelSpec(
    name="gpt",
    family="transformer",
    item="token",
    build=build,
    example_inputs=example_inputs,
    workload="generate",
    description=(
        "decoder-only Transformer (Llama layout: RMSNorm, RoPE, GQA, SwiGLU) with a static or dynamic "
        "KV cache; prefill + greedy decode; tiny / ~114M GPT-2-small scale / TinyLlama-1.1B layout"
    ),
)

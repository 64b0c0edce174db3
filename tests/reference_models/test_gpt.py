"""The ``gpt`` reference model: cached decode equals recomputation, cache bookkeeping, GQA, compile.

Everything runs the tiny size on CPU; ``small`` and ``base`` are only built on the
meta device, to count their parameters without allocating them.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reference_models.causal_lm import CACHE_KINDS, CausalLM, KVShape, interface_problem
from reference_models.gpt import GPT, GPT_SPEC, build, example_inputs, rope_tables
from reference_models.kv_cache import DynamicKVCache, StaticKVCache

PROMPT, NEW, BATCH = 7, 5, 2


@pytest.fixture(scope="module")
def tiny() -> GPT:
    return build("tiny")


def _tokens(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, GPT.CONFIGS["tiny"].vocab_size, (batch, length), generator=gen)


def test_spec_and_interface(tiny: GPT) -> None:
    assert (GPT_SPEC.name, GPT_SPEC.family, GPT_SPEC.item, GPT_SPEC.workload) == (
        "gpt", "transformer", "token", "generate",
    )  # fmt: skip
    assert GPT_SPEC.description
    assert interface_problem(tiny) is None
    assert isinstance(tiny, CausalLM)
    assert tiny.kv_shape() == KVShape(layers=2, kv_heads=2, head_dim=16)
    assert (tiny.vocab_size, tiny.max_seq_len) == (256, 128)


def test_interface_problem_names_the_missing_members() -> None:
    problem = interface_problem(nn.Linear(2, 2))
    assert problem is not None and "\n" not in problem
    assert "Linear" in problem and "setup_cache" in problem and "kv_shape" in problem
    assert "forward" not in problem  # nn.Linear has a forward

    class NotCallable(nn.Module):
        vocab_size = 4
        max_seq_len = 8
        kv_shape = setup_cache = reset_cache = cache_bytes = None

    problem = interface_problem(NotCallable())
    assert problem is not None and "not callable: kv_shape, setup_cache, reset_cache, cache_bytes" in problem


def test_kv_shape_bytes_for() -> None:
    assert KVShape(layers=3, kv_heads=2, head_dim=8).bytes_for(tokens=5, batch=4, element_size=2) == (
        2 * 3 * 2 * 8 * 2 * 5 * 4
    )


def test_build_is_deterministic_and_logits_are_not_flat(tiny: GPT) -> None:
    assert not tiny.training
    (prompt,) = example_inputs(BATCH, "tiny", 0)
    assert prompt.dtype == torch.int64 and prompt.shape == (BATCH, 16)
    assert torch.equal(prompt, example_inputs(BATCH, "tiny", 0)[0])
    assert not torch.equal(prompt, example_inputs(BATCH, "tiny", 1)[0])
    other = build("tiny")
    with torch.no_grad():
        logits = tiny(prompt)
        assert torch.equal(logits, other(prompt))
    assert logits.shape == (BATCH, 16, 256) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert 0.05 < logits.std().item() < 5.0


def test_unknown_size_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no size 'huge'"):
        build("huge")
    with pytest.raises(ValueError, match="no size 'huge'"):
        example_inputs(1, "huge", 0)


def test_parameter_counts_of_the_large_sizes() -> None:
    """small is GPT-2-small scale, base TinyLlama's 1.1B; the meta device allocates nothing."""
    with torch.device("meta"):
        small, base = GPT(GPT.CONFIGS["small"]), GPT(GPT.CONFIGS["base"])
    # parameters() yields a shared (tied) Parameter once
    n_small = sum(p.numel() for p in small.parameters())
    n_base = sum(p.numel() for p in base.parameters())
    assert 100e6 <= n_small <= 140e6
    assert 1.0e9 <= n_base <= 1.2e9
    assert small.output.weight is small.tok_embeddings.weight
    assert base.output.weight is not base.tok_embeddings.weight


def test_state_dict_has_no_cache_and_tied_weights_are_one_parameter(tiny: GPT) -> None:
    model = build("tiny")
    model.setup_cache(BATCH, 16, "static")
    keys = set(model.state_dict())
    assert not any("cache" in key or "rope" in key for key in keys)
    assert keys == set(build("tiny").state_dict())
    assert model.output.weight is model.tok_embeddings.weight
    names = [name for name, _ in model.named_parameters()]
    assert "output.weight" not in names and "tok_embeddings.weight" in names


def _decode_against_full(model: GPT, kind: str, chunks: tuple[int, ...]) -> None:
    """Prefill ``PROMPT`` tokens in ``chunks``, decode ``NEW`` given tokens one at a time; compare to a full pass."""
    seq = _tokens(BATCH, PROMPT + NEW, seed=1)
    model.setup_cache(BATCH, PROMPT + NEW, kind)  # outside inference mode, as the harness does
    with torch.inference_mode():
        full = model(seq)
        start = 0
        for chunk in chunks:
            logits = model(seq[:, start : start + chunk], torch.arange(start, start + chunk))
            torch.testing.assert_close(logits, full[:, start : start + chunk], atol=1e-5, rtol=0)
            start += chunk
        assert start == PROMPT
        for pos in range(PROMPT, PROMPT + NEW):
            logits = model(seq[:, pos : pos + 1], torch.tensor([pos]))
            assert logits.shape == (BATCH, 1, model.vocab_size)
            torch.testing.assert_close(logits[:, 0], full[:, pos], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", CACHE_KINDS)
@pytest.mark.parametrize("chunks", [(PROMPT,), (3, PROMPT - 3)], ids=["one-prefill", "two-chunks"])
def test_cached_decode_equals_full_recomputation(tiny: GPT, kind: str, chunks: tuple[int, ...]) -> None:
    _decode_against_full(tiny, kind, chunks)


def test_cache_is_reusable_after_reset(tiny: GPT) -> None:
    """A second sequence on the same cache gives the same logits as on a fresh one."""
    for kind in CACHE_KINDS:
        _decode_against_full(tiny, kind, (PROMPT,))
        _decode_against_full(tiny, kind, (2, PROMPT - 2))  # setup_cache again: a reset


def test_setup_cache_keeps_or_reallocates_static_buffers() -> None:
    model = build("tiny")
    model.setup_cache(BATCH, 16, "static")
    cache = model.kv_cache
    assert isinstance(cache, StaticKVCache)
    ptrs = (cache.k.data_ptr(), cache.v.data_ptr())
    with torch.no_grad():
        model(_tokens(BATCH, 4), torch.arange(4))
    assert cache.k.any()
    model.setup_cache(BATCH, 16, "static")  # same request: reset only
    assert model.kv_cache is cache and (cache.k.data_ptr(), cache.v.data_ptr()) == ptrs
    model.reset_cache()
    assert model.kv_cache is cache and cache.k.data_ptr() == ptrs[0]
    model.setup_cache(BATCH + 1, 16, "static")  # different batch: a new cache
    assert model.kv_cache is not cache and model.kv_cache.batch_size == BATCH + 1
    model.setup_cache(BATCH + 1, 16, "dynamic")
    assert isinstance(model.kv_cache, DynamicKVCache)


def test_cache_bytes_are_measured_from_the_tensors() -> None:
    model = build("tiny")
    shape = model.kv_shape()
    assert model.cache_bytes() == 0
    model.setup_cache(BATCH, 32, "static")
    assert model.cache_bytes() == shape.bytes_for(32, BATCH, 4)
    model.setup_cache(BATCH, 32, "dynamic")
    assert model.cache_bytes() == 0
    with torch.no_grad():
        model(_tokens(BATCH, PROMPT), torch.arange(PROMPT))
        for pos in range(PROMPT, PROMPT + 3):
            model(_tokens(BATCH, 1, seed=pos), torch.tensor([pos]))
    assert model.cache_bytes() == shape.bytes_for(PROMPT + 3, BATCH, 4)
    model.reset_cache()
    assert model.cache_bytes() == 0


def test_bf16_model_has_a_bf16_cache_of_half_the_bytes_and_fp32_rope() -> None:
    model = build("tiny")
    model.setup_cache(BATCH, 32, "static")
    fp32_bytes = model.cache_bytes()
    model.to(torch.bfloat16)  # casts the existing static buffers with the weights
    assert model.kv_cache.k.dtype == torch.bfloat16
    assert model.cache_bytes() == fp32_bytes // 2
    model.setup_cache(BATCH, 32, "static")  # dtype unchanged since the cast: kept
    assert model.kv_cache.k.dtype == torch.bfloat16 and model.cache_bytes() == fp32_bytes // 2
    # The rotary tables are rebuilt in fp32 after the cast, not rounded to bf16.
    assert model.rope.tables.dtype == torch.float32
    assert torch.equal(model.rope.tables, rope_tables(model.max_seq_len, model.config.head_dim))
    with torch.no_grad():
        logits = model(_tokens(BATCH, PROMPT), torch.arange(PROMPT))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()

    fresh = build("tiny").to(torch.bfloat16)
    fresh.setup_cache(BATCH, 32, "static")  # allocated in the weights' dtype
    assert fresh.kv_cache.k.dtype == torch.bfloat16 and fresh.cache_bytes() == fp32_bytes // 2
    fresh.setup_cache(BATCH, 32, "dynamic")
    with torch.no_grad():
        fresh(_tokens(BATCH, PROMPT), torch.arange(PROMPT))
    assert fresh.cache_bytes() == model.kv_shape().bytes_for(PROMPT, BATCH, 2)


def test_bad_cache_requests_are_one_line_value_errors(tiny: GPT) -> None:
    model = build("tiny")
    with pytest.raises(ValueError, match="unknown KV cache kind 'paged'; choose from static, dynamic"):
        model.setup_cache(1, 16, "paged")
    with pytest.raises(ValueError, match="max_len must be in 1..128"):
        model.setup_cache(1, 129, "static")
    with pytest.raises(ValueError, match="call setup_cache first"):
        model(_tokens(1, 2), torch.arange(2))
    with pytest.raises(ValueError, match="exceed max_seq_len 128"):
        model(_tokens(1, 129))


def _rotate(x: torch.Tensor, positions: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """Hugging Face Llama's rotary embedding (rotate_half with full-width cos/sin), written independently."""
    dim = x.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2).double() / dim)
    freqs = positions.double()[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    x1, x2 = x[..., : dim // 2], x[..., dim // 2 :]
    rotate_half = torch.cat([-x2, x1], dim=-1)
    return (x.double() * emb.cos() + rotate_half * emb.sin()).to(x.dtype)


def _reference_forward(model: GPT, tokens: torch.Tensor) -> torch.Tensor:
    """The whole model by hand: K/V repeated explicitly to every query head, softmax attention, causal mask."""
    cfg = model.config
    groups = cfg.n_heads // cfg.n_kv_heads
    batch, seq = tokens.shape
    positions = torch.arange(seq)

    def rms(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * weight

    def heads(x: torch.Tensor, n: int) -> torch.Tensor:
        return x.view(batch, seq, n, cfg.head_dim).transpose(1, 2)

    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    x = model.tok_embeddings.weight[tokens]
    for layer in model.layers:
        attn = layer.attention
        h = rms(x, layer.attention_norm.weight)
        q = _rotate(heads(h @ attn.wq.weight.T, cfg.n_heads), positions)
        k = _rotate(heads(h @ attn.wk.weight.T, cfg.n_kv_heads), positions).repeat_interleave(groups, dim=1)
        v = heads(h @ attn.wv.weight.T, cfg.n_kv_heads).repeat_interleave(groups, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(cfg.head_dim)
        weights = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        out = (weights @ v).transpose(1, 2).reshape(batch, seq, cfg.dim)
        x = x + out @ attn.wo.weight.T
        h = rms(x, layer.ffn_norm.weight)
        ff = layer.feed_forward
        x = x + (F.silu(h @ ff.w1.weight.T) * (h @ ff.w3.weight.T)) @ ff.w2.weight.T
    return rms(x, model.norm.weight) @ model.output.weight.T


def test_gqa_equals_explicit_repeat_of_kv(tiny: GPT) -> None:
    assert tiny.config.n_kv_heads < tiny.config.n_heads
    seq = _tokens(BATCH, 12, seed=3)
    with torch.no_grad():
        expected = _reference_forward(tiny, seq)
        torch.testing.assert_close(tiny(seq), expected, atol=1e-5, rtol=1e-4)
        tiny.setup_cache(BATCH, 16, "static")
        torch.testing.assert_close(tiny(seq, torch.arange(12)), expected, atol=1e-5, rtol=1e-4)


def test_rotary_scores_depend_only_on_relative_position(tiny: GPT) -> None:
    """q at m and k at n score the same as q at m + s and k at n + s: what makes RoPE positional."""
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=gen), torch.randn(1, 1, 1, 16, generator=gen)

    def score(m: int, n: int) -> float:
        qm, kn = tiny.rope(q, torch.tensor([m])), tiny.rope(k, torch.tensor([n]))
        return float((qm * kn).sum())

    assert score(5, 2) == pytest.approx(score(105, 102), abs=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)
    assert float(tiny.rope(q, torch.tensor([9])).norm()) == pytest.approx(float(q.norm()), rel=1e-5)


@pytest.mark.slow
def test_compiled_static_decode_matches_eager_without_recompiling() -> None:
    """Prefill and decode each compile once (fullgraph, static shapes); later decode steps reuse the graph."""
    from torch._dynamo.testing import CompileCounterWithBackend

    model = build("tiny")
    seq = _tokens(BATCH, PROMPT + 3, seed=4)
    steps = [(seq[:, :PROMPT], torch.arange(PROMPT))]
    steps += [(seq[:, pos : pos + 1], torch.tensor([pos])) for pos in range(PROMPT, PROMPT + 3)]
    model.setup_cache(BATCH, 16, "static")
    with torch.inference_mode():  # as the harness's generate loop runs
        eager = [model(tokens, pos) for tokens, pos in steps]
    torch._dynamo.reset()
    try:
        counter = CompileCounterWithBackend("inductor")
        compiled = torch.compile(model, backend=counter, dynamic=False, fullgraph=True)
        model.setup_cache(BATCH, 16, "static")  # reset: same buffers
        ptr = model.kv_cache.k.data_ptr()
        with torch.inference_mode():
            for (tokens, pos), expected in zip(steps, eager, strict=True):
                torch.testing.assert_close(compiled(tokens, pos), expected, atol=1e-4, rtol=0)
    finally:
        torch._dynamo.reset()  # leave no compiled state to later tests
    assert counter.frame_count == 2  # one prefill graph, one decode graph for all three steps
    assert model.kv_cache.k.data_ptr() == ptr

"""The two KV-cache forms on their own: in-place static writes, dynamic growth, masks, bytes, dtype."""

from __future__ import annotations

import pytest
import torch

from reference_models.kv_cache import DynamicKVCache, StaticKVCache, causal_mask

LAYERS, BATCH, HEADS, MAX_LEN, HEAD_DIM = 2, 3, 2, 8, 4


def _static(dtype: torch.dtype = torch.float32) -> StaticKVCache:
    return StaticKVCache(LAYERS, BATCH, HEADS, MAX_LEN, HEAD_DIM, dtype, torch.device("cpu"))


def _kv(tokens: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(BATCH, HEADS, tokens, HEAD_DIM, generator=gen)
    v = torch.randn(BATCH, HEADS, tokens, HEAD_DIM, generator=gen)
    return k, v


def test_causal_mask_is_key_at_or_before_query() -> None:
    mask = causal_mask(torch.tensor([2, 3]), 5)
    expected = torch.tensor([[True, True, True, False, False], [True, True, True, True, False]])
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


def test_static_update_writes_in_place_at_the_positions() -> None:
    cache = _static()
    k_ptr, v_ptr = cache.k.data_ptr(), cache.v.data_ptr()
    k, v = _kv(3, seed=0)
    k_all, v_all = cache.update(1, torch.tensor([0, 1, 2]), k, v)
    k1, v1 = _kv(1, seed=1)
    k_all, v_all = cache.update(1, torch.tensor([3]), k1, v1)
    assert k_all.shape == (BATCH, HEADS, MAX_LEN, HEAD_DIM)
    assert torch.equal(k_all[:, :, :3], k) and torch.equal(v_all[:, :, 3:4], v1)
    assert not k_all[:, :, 4:].any()  # unwritten slots stay zero
    assert not cache.k[0].any()  # the other layer is untouched
    # Same storage throughout: fixed addresses are what a CUDA graph replays.
    assert (cache.k.data_ptr(), cache.v.data_ptr()) == (k_ptr, v_ptr)
    assert k_all.data_ptr() == cache.k[1].data_ptr()
    cache.reset()
    assert not cache.k.any() and cache.k.data_ptr() == k_ptr


def test_static_mask_covers_every_slot() -> None:
    cache = _static()
    k, v = _kv(1, seed=0)
    k_all, _ = cache.update(0, torch.tensor([4]), k, v)
    mask = cache.mask(torch.tensor([4]), k_all.shape[2])
    assert mask.shape == (1, MAX_LEN)
    assert mask[0].tolist() == [True] * 5 + [False] * 3


def test_static_buffers_are_not_state_and_cast_with_the_module() -> None:
    cache = _static()
    assert cache.state_dict() == {}
    assert cache.nbytes() == 2 * LAYERS * BATCH * HEADS * MAX_LEN * HEAD_DIM * 4
    cache.to(torch.bfloat16)
    assert cache.k.dtype == cache.v.dtype == torch.bfloat16
    assert cache.nbytes() == 2 * LAYERS * BATCH * HEADS * MAX_LEN * HEAD_DIM * 2


def test_static_update_casts_a_narrower_step_to_the_cache_dtype() -> None:
    cache = _static()
    k, v = _kv(2, seed=0)
    k_all, _ = cache.update(0, torch.tensor([0, 1]), k.to(torch.bfloat16), v.to(torch.bfloat16))
    assert k_all.dtype == torch.float32
    assert torch.equal(k_all[:, :, :2], k.to(torch.bfloat16).float())


def test_dynamic_grows_by_concatenation_and_resets_to_empty() -> None:
    cache = DynamicKVCache(LAYERS, BATCH, MAX_LEN)
    assert cache.nbytes() == 0 and cache.seq_len() == 0
    k, v = _kv(3, seed=0)
    k_all, v_all = cache.update(0, torch.arange(3), k, v)
    cache.update(1, torch.arange(3), k, v)
    assert k_all.shape[2] == 3 and cache.seq_len() == 3
    k1, v1 = _kv(1, seed=1)
    k_all, v_all = cache.update(0, torch.tensor([3]), k1, v1)
    assert torch.equal(k_all, torch.cat([k, k1], dim=2)) and torch.equal(v_all, torch.cat([v, v1], dim=2))
    mask = cache.mask(torch.tensor([3]), k_all.shape[2])
    assert mask.shape == (1, 4) and bool(mask.all())
    # layer 0 holds 4 positions, layer 1 holds 3; bytes are measured from the tensors
    assert cache.nbytes() == (4 + 3) * 2 * BATCH * HEADS * HEAD_DIM * 4
    assert cache.state_dict() == {}
    cache.reset()
    assert cache.nbytes() == 0 and cache.seq_len() == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dynamic_takes_the_dtype_of_its_first_step(dtype: torch.dtype) -> None:
    cache = DynamicKVCache(LAYERS, BATCH, MAX_LEN)
    k, v = _kv(2, seed=0)
    k_all, _ = cache.update(0, torch.arange(2), k.to(dtype), v.to(dtype))
    assert k_all.dtype == dtype
    assert cache.nbytes() == 2 * 2 * BATCH * HEADS * HEAD_DIM * torch.finfo(dtype).bits // 8

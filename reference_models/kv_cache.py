"""The two KV-cache forms of the causal-LM interface: static (preallocated) and dynamic (growing).

Both hold every layer of one model and answer the same two questions for a step
whose tokens sit at positions ``input_pos`` (int64 [T]):

- ``update(layer, input_pos, k, v) -> (k_all, v_all)``: store this step's keys
  and values ([B, kv_heads, T, head_dim]) and return all the keys and values the
  step's queries attend over;
- ``mask(input_pos, kv_len) -> bool [T, kv_len]``: True where key position ``j``
  may be seen by the query at ``input_pos[t]``, i.e. ``j <= input_pos[t]``.

The static form follows gpt-fast: K and V are non-persistent registered buffers
of one fixed shape, written in place with ``index_copy_`` along the sequence
dimension, so compiled code sees fixed shapes and fixed addresses every step (a
CUDA graph can replay it), ``module.to(torch.bfloat16)`` casts them with the
weights, and ``state_dict`` never carries them. Queries attend over all
``max_len`` slots; slots not yet written are masked out by the ``j <= pos`` rule.
Slots are zero-filled (not ``torch.empty``) so a masked slot is never NaN, which
would survive the zero attention weight.

The dynamic form is what eager Hugging Face generation does: each layer's K and V
grow by concatenation, so a step attends over exactly the positions so far and a
compiler sees a new shape every step. It appends, ignoring the values of
``input_pos`` (only the mask reads them): positions must continue the sequence.
"""

from __future__ import annotations

import torch
from torch import nn


def causal_mask(input_pos: torch.Tensor, kv_len: int) -> torch.Tensor:
    """Bool [T, kv_len]: True where key position ``j`` is at or before the query's position.

    Built from tensor ops only (no Python branch on values), so it traces.
    """
    key_pos = torch.arange(kv_len, device=input_pos.device)
    return key_pos[None, :] <= input_pos[:, None]


class StaticKVCache(nn.Module):
    """Preallocated K and V, [layers, batch, kv_heads, max_len, head_dim] each, written in place."""

    k: torch.Tensor
    v: torch.Tensor

    def __init__(
        self,
        layers: int,
        batch_size: int,
        kv_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        super().__init__()
        shape = (layers, batch_size, kv_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    def update(
        self, layer: int, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k``/``v`` [B, H, T, D] at ``input_pos`` in place; return this layer's full K and V.

        ``to(dtype)`` is a no-op when the step's dtype is the cache's already; it
        only matters under autocast, where activations are narrower than weights.
        """
        k_layer, v_layer = self.k[layer], self.v[layer]
        k_layer.index_copy_(2, input_pos, k.to(k_layer.dtype))
        v_layer.index_copy_(2, input_pos, v.to(v_layer.dtype))
        return k_layer, v_layer

    def mask(self, input_pos: torch.Tensor, kv_len: int) -> torch.Tensor:
        """The step's mask over all ``max_len`` slots (``kv_len`` is always ``max_len`` here)."""
        return causal_mask(input_pos, kv_len)

    def reset(self) -> None:
        """A new sequence: zero the slots in place (same tensors, same addresses)."""
        self.k.zero_()
        self.v.zero_()

    def nbytes(self) -> int:
        """Bytes the preallocated K and V hold, from the tensors themselves."""
        return sum(t.numel() * t.element_size() for t in (self.k, self.v))


class DynamicKVCache(nn.Module):
    """Per-layer K and V that start empty and grow by concatenation along the sequence dimension.

    A layer's tensors are None until its first update, so the first step stores
    the step's own tensors (in whatever dtype the model runs now) rather than
    concatenating onto an empty tensor of a dtype fixed at setup time.
    """

    def __init__(self, layers: int, batch_size: int, max_len: int) -> None:
        super().__init__()
        self.layers = layers
        self.batch_size = batch_size
        self.max_len = max_len
        self.ks: list[torch.Tensor | None] = [None] * layers
        self.vs: list[torch.Tensor | None] = [None] * layers

    def update(
        self, layer: int, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``k``/``v`` [B, H, T, D] to this layer's; return the layer's K and V so far."""
        k_old, v_old = self.ks[layer], self.vs[layer]
        k_all = k if k_old is None else torch.cat([k_old, k.to(k_old.dtype)], dim=2)
        v_all = v if v_old is None else torch.cat([v_old, v.to(v_old.dtype)], dim=2)
        self.ks[layer], self.vs[layer] = k_all, v_all
        return k_all, v_all

    def mask(self, input_pos: torch.Tensor, kv_len: int) -> torch.Tensor:
        """The step's mask over the ``kv_len`` keys stored so far (this step's included)."""
        return causal_mask(input_pos, kv_len)

    def seq_len(self) -> int:
        """Positions stored so far (layer 0's; every layer holds the same number after a step)."""
        k0 = self.ks[0]
        return 0 if k0 is None else k0.shape[2]

    def reset(self) -> None:
        """A new sequence: back to empty (the tensors are dropped)."""
        self.ks = [None] * self.layers
        self.vs = [None] * self.layers

    def nbytes(self) -> int:
        """Bytes the stored K and V hold now, from the tensors themselves."""
        return sum(t.numel() * t.element_size() for t in (*self.ks, *self.vs) if t is not None)

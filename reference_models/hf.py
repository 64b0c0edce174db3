"""Users' own causal LMs from ``transformers``: an adapter to genbench's causal-LM interface, and ``hf:PATH``.

``TransformersCausalLM`` wraps a ``transformers`` causal LM (``LlamaForCausalLM``,
``GPT2LMHeadModel``, ...) so the harness's generate loop drives it like the
reference causal LMs (reference_models.causal_lm): the KV cache is one of
transformers' own cache classes (``DynamicCache``, ``StaticCache``), so the model's
attention code runs exactly as it does under ``model.generate``. The wrapped model is
a submodule, so genbench's passes (dtype casts, deepcopy, torch.compile, torchao's
``quantize_``) reach its weights.

``load_hf_folder`` turns a local folder (``--model hf:PATH``) into a ModelSpec. Only
``*.safetensors`` weights are loaded (never a pickled ``pytorch_model.bin``); a folder
with a config and no weights builds seeded random weights, enough to time the
architecture. Nothing here touches the network: ``HF_HUB_OFFLINE=1`` is set before
transformers is imported and every load is ``local_files_only``.

transformers is imported only when one of these is used, so genbench runs without it.
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from reference_models.causal_lm import CACHE_KINDS, KVShape
from reference_models.lm_spec import generate_spec
from reference_models.spec import ModelSpec, build_seeded, error_line

_BUILD_SEED = 0
_INSTALL_HINT = "hf: models need transformers: pip install 'genbench[hf]'"


def _transformers() -> ModuleType:
    """Import transformers offline, or say in one line how to install it."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: every load below is local_files_only too
    try:
        import transformers
    except ImportError:
        raise ValueError(_INSTALL_HINT) from None
    return transformers


def is_transformers_causal_lm(obj: object) -> bool:
    """Whether ``obj`` is a transformers model that generates text from token ids alone.

    Nothing is imported for this: an object cannot be one of transformers' models
    unless ``transformers.modeling_utils`` (home of ``PreTrainedModel``) is already in
    ``sys.modules``, and touching ``transformers.PreTrainedModel`` would make its lazy
    package import that module. A causal LM is a ``PreTrainedModel`` that can generate
    (it has a language-model head) and is not an encoder-decoder (those need encoder
    inputs too).
    """
    modeling_utils = sys.modules.get("transformers.modeling_utils")
    pretrained = getattr(modeling_utils, "PreTrainedModel", None)
    if pretrained is None or not isinstance(obj, pretrained):
        return False
    return bool(obj.can_generate()) and not getattr(obj.config, "is_encoder_decoder", False)


def _config_int(config: Any, *names: str) -> int | None:
    """The first of ``names`` the config sets to an int (transformers' names differ by family)."""
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


class TransformersCausalLM(nn.Module):
    """A transformers causal LM behind genbench's causal-LM interface (reference_models.causal_lm).

    ``setup_cache`` makes one of transformers' caches with the model's config, in the
    dtype and on the device of the model's embedding at that moment, so a model cast
    to bf16 gets a bf16 cache. ``static`` is a ``StaticCache`` allocated up front to
    ``max_len`` tokens; ``dynamic`` is a ``DynamicCache`` that grows by concatenation.
    GPT-2 supports both in transformers 5.24 (tested). Models with sliding-window
    layers get transformers' sliding layers, which hold at most the window, so their
    ``cache_bytes`` can be below ``kv_shape().bytes_for``.

    transformers' caches append at their own length, not at ``input_pos``: positions
    must continue the cache (the prefill from 0 after ``setup_cache``/``reset_cache``,
    then one position per decode step), which is how the generate loop calls it.
    ``input_pos`` becomes the model's ``position_ids``, so rotary and learned position
    embeddings see the right positions.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not is_transformers_causal_lm(model):
            raise ValueError(f"{type(model).__name__} is not a transformers causal LM")
        self.model = model
        config = model.config.get_text_config(decoder=True)
        vocab_size = _config_int(config, "vocab_size")
        max_seq_len = _config_int(config, "max_position_embeddings", "n_positions")
        if vocab_size is None or max_seq_len is None:
            raise ValueError(
                f"{type(model).__name__}'s config has no vocab_size or max_position_embeddings/n_positions"
            )
        self.vocab_size: int = vocab_size
        self.max_seq_len: int = max_seq_len
        # transformers 5 renamed past_key_values to cache and dropped cache_position; older ones need both.
        params = inspect.signature(model.forward).parameters
        self._new_cache_api = "cache" in params
        self._cache: Any = None
        self._cache_key: tuple[Any, ...] | None = None

    def kv_shape(self) -> KVShape:
        """Layers, KV heads and head size from the config (GPT-2 spells them n_layer, n_head, n_embd)."""
        config = self.model.config.get_text_config(decoder=True)
        layers = _config_int(config, "num_hidden_layers", "n_layer")
        heads = _config_int(config, "num_attention_heads", "n_head")
        hidden = _config_int(config, "hidden_size", "n_embd")
        if layers is None or heads is None:
            raise ValueError(f"{type(self.model).__name__}'s config has no layer or head count")
        kv_heads = _config_int(config, "num_key_value_heads") or heads
        head_dim = _config_int(config, "head_dim")
        if head_dim is None:
            if hidden is None:
                raise ValueError(f"{type(self.model).__name__}'s config has no head_dim or hidden_size")
            head_dim = hidden // heads
        return KVShape(layers=layers, kv_heads=kv_heads, head_dim=head_dim)

    def _dtype_device(self) -> tuple[torch.dtype, torch.device]:
        """The input embedding's dtype and device: the activations' (quantize_ leaves embeddings alone)."""
        weight = self.model.get_input_embeddings().weight
        return weight.dtype, weight.device

    def setup_cache(self, batch_size: int, max_len: int, kind: str) -> None:
        """Make a fresh cache for ``batch_size`` sequences of up to ``max_len`` tokens; same args: reset only."""
        if kind not in CACHE_KINDS:
            raise ValueError(f"cache kind must be one of {', '.join(CACHE_KINDS)}, got {kind!r}")
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        if not 1 <= max_len <= self.max_seq_len:
            raise ValueError(
                f"cache length must be between 1 and the model's {self.max_seq_len}, got {max_len}"
            )
        dtype, device = self._dtype_device()
        key = (batch_size, max_len, kind, dtype, device)
        if key == self._cache_key:
            self.reset_cache()
            return
        transformers = _transformers()
        config = self.model.config
        if kind == "dynamic":
            cache = transformers.DynamicCache(config=config)
        else:
            cache = transformers.StaticCache(config=config, max_cache_len=max_len)
            shape = self.kv_shape()
            # Allocate now rather than on the first forward, so cache_bytes is right before the prefill.
            cache.early_initialization(batch_size, shape.kv_heads, shape.head_dim, dtype, device)
        self._cache, self._cache_key = cache, key

    def reset_cache(self) -> None:
        """Forget every cached token; a static cache keeps (and zeroes) its tensors."""
        if self._cache is not None:
            self._cache.reset()

    def cache_bytes(self) -> int:
        """Bytes the cache's key and value tensors hold now (numel x element size), a shared tensor once."""
        if self._cache is None:
            return 0
        seen: set[tuple[str, int]] = set()
        total = 0
        for layer in getattr(self._cache, "layers", ()):
            for name in ("keys", "values"):
                tensor = getattr(layer, name, None)
                if not isinstance(tensor, torch.Tensor) or tensor.numel() == 0:
                    continue
                ident = (str(tensor.device), tensor.data_ptr())
                if ident in seen:
                    continue
                seen.add(ident)
                total += tensor.numel() * tensor.element_size()
        return total

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, T, V]; with ``input_pos`` the tokens' positions, reading and extending the cache."""
        if input_pos is None:
            return self.model(input_ids=tokens, use_cache=False).logits
        if self._cache is None:
            raise ValueError("call setup_cache before a forward with input_pos")
        position_ids = input_pos.unsqueeze(0)
        if self._new_cache_api:
            out = self.model(input_ids=tokens, cache=self._cache, position_ids=position_ids, use_cache=True)
        else:  # transformers 4.x (untested here)
            out = self.model(
                input_ids=tokens,
                past_key_values=self._cache,
                cache_position=input_pos,
                position_ids=position_ids,
                use_cache=True,
            )
        return out.logits


def _check_folder(folder: str) -> tuple[Any, list[Path]]:
    """The folder's config (a causal LM transformers knows) and its safetensors files, or a one-line error."""
    name = f"hf:{folder}"
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(f"{name}: no such folder")
    if not (root / "config.json").is_file():
        raise ValueError(f"{name}: the folder has no config.json")
    transformers = _transformers()
    try:
        config = transformers.AutoConfig.from_pretrained(str(root), local_files_only=True)
    except Exception as exc:
        raise ValueError(f"{name}: config.json is not a transformers config ({error_line(exc)})") from exc
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise ValueError(
            f"{name}: config.json is a {config.model_type!r} model, not a causal LM transformers knows"
        )
    weights = sorted(root.glob("*.safetensors"))
    if not weights and any(root.glob("*.bin")):
        raise ValueError(
            f"{name}: only *.bin weights; genbench loads *.safetensors only (never pickle): "
            "re-save with save_pretrained(safe_serialization=True)"
        )
    return config, weights


def load_hf_folder(path: str) -> ModelSpec:
    """``--model hf:PATH``: a local transformers causal-LM folder as a one-size generate ModelSpec.

    The folder is checked now (it exists, its config.json is a causal LM transformers
    knows), so a bad path fails at argument parsing; the weights are read by each
    ``build``, which returns a fresh fp32 ``TransformersCausalLM`` in eval mode, built
    under a fixed seed so weights the folder lacks are random and repeat. ``path`` may
    carry the ``hf:`` prefix or not.
    """
    folder = path.removeprefix("hf:")
    name = f"hf:{folder}"
    config, weights = _check_folder(folder)
    root = str(Path(folder).expanduser())
    transformers = _transformers()

    def make() -> nn.Module:
        auto = transformers.AutoModelForCausalLM
        if weights:
            model = auto.from_pretrained(root, local_files_only=True, dtype=torch.float32)
        else:
            model = auto.from_config(config, dtype=torch.float32)
        return TransformersCausalLM(model)

    def build(size: str) -> nn.Module:
        # The size is ignored: a folder is one model.
        try:
            return build_seeded(make, seed=_BUILD_SEED)
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"{name}: cannot load the model ({error_line(exc)})") from exc

    if weights:
        found = f"weights from {len(weights)} *.safetensors file{'s' if len(weights) > 1 else ''}"
    else:
        found = f"no *.safetensors weights in the folder: random weights (seed {_BUILD_SEED})"
    vocab_size = _config_int(config.get_text_config(decoder=True), "vocab_size")
    if vocab_size is None:
        raise ValueError(f"{name}: config.json has no vocab_size")
    text_config = config.get_text_config(decoder=True)
    return generate_spec(
        name=name,
        build=build,
        vocab_size=vocab_size,
        description=f"transformers {type(config).__name__.removesuffix('Config')} from {folder}; {found}",
        context=_config_int(text_config, "max_position_embeddings", "n_positions"),
    )

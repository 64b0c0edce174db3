"""transformers causal LMs behind genbench's causal-LM interface, and ``hf:PATH`` folders.

Every model is a tiny config built in code (no downloads): a Llama with grouped-query
attention (4 heads, 2 KV heads) and a GPT-2, whose config names differ (n_layer,
n_head, n_embd, n_positions).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from reference_models.causal_lm import CACHE_KINDS, interface_problem  # noqa: E402
from reference_models.hf import TransformersCausalLM, is_transformers_causal_lm, load_hf_folder  # noqa: E402
from reference_models.spec import build_seeded  # noqa: E402

VOCAB = 128
PROMPT, STEPS, BATCH = 9, 3, 2


def llama_config() -> transformers.LlamaConfig:
    return transformers.LlamaConfig(
        num_hidden_layers=2,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        max_position_embeddings=64,
    )


def gpt2_config() -> transformers.GPT2Config:
    return transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB, n_positions=64, bos_token_id=0, eos_token_id=0
    )


CONFIGS = {"llama": llama_config, "gpt2": gpt2_config}
# (layers, kv_heads, head_dim): Llama's KV heads are fewer than its query heads
KV_SHAPES = {"llama": (2, 2, 16), "gpt2": (2, 4, 16)}


def tiny_model(arch: str) -> torch.nn.Module:
    config = CONFIGS[arch]()
    return build_seeded(lambda: transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32))


def tokens(length: int = PROMPT + STEPS, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (BATCH, length), generator=torch.Generator().manual_seed(seed))


def cached_logits(lm: TransformersCausalLM, ids: torch.Tensor) -> torch.Tensor:
    """Prefill PROMPT tokens, then decode the rest one at a time, as the generate loop does."""
    outs = [lm(ids[:, :PROMPT], torch.arange(PROMPT))]
    for pos in range(PROMPT, ids.shape[1]):
        outs.append(lm(ids[:, pos : pos + 1], torch.tensor([pos])))
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("kind", CACHE_KINDS)
@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_cached_decode_equals_the_full_forward(arch: str, kind: str) -> None:
    lm = TransformersCausalLM(tiny_model(arch))
    assert interface_problem(lm) is None
    ids = tokens()
    with torch.inference_mode():
        full = lm(ids)
        lm.setup_cache(BATCH, 20, kind)
        got = cached_logits(lm, ids)
    assert full.shape == (BATCH, PROMPT + STEPS, VOCAB)
    torch.testing.assert_close(got, full, atol=1e-4, rtol=0)
    # the full forward neither read nor wrote the cache: running it again changes nothing
    with torch.inference_mode():
        torch.testing.assert_close(lm(ids), full, atol=0, rtol=0)


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_config_facts_and_kv_shape(arch: str) -> None:
    lm = TransformersCausalLM(tiny_model(arch))
    assert (lm.vocab_size, lm.max_seq_len) == (VOCAB, 64)
    shape = lm.kv_shape()
    assert (shape.layers, shape.kv_heads, shape.head_dim) == KV_SHAPES[arch]


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_cache_bytes_are_measured_from_the_cache(arch: str) -> None:
    lm = TransformersCausalLM(tiny_model(arch))
    shape = lm.kv_shape()
    assert lm.cache_bytes() == 0
    with torch.inference_mode():
        lm.setup_cache(BATCH, 20, "static")
        assert lm.cache_bytes() == shape.bytes_for(20, BATCH, 4)  # preallocated before any forward
        cached_logits(lm, tokens())
        assert lm.cache_bytes() == shape.bytes_for(20, BATCH, 4)

        lm.setup_cache(BATCH, 20, "dynamic")
        assert lm.cache_bytes() == 0
        cached_logits(lm, tokens())
        assert lm.cache_bytes() == shape.bytes_for(PROMPT + STEPS, BATCH, 4)  # grew to what was written
        lm.reset_cache()
        assert lm.cache_bytes() == 0


def test_same_setup_again_only_resets_the_static_cache() -> None:
    lm = TransformersCausalLM(tiny_model("llama"))
    ids = tokens()
    with torch.inference_mode():
        lm.setup_cache(BATCH, 20, "static")
        first = cached_logits(lm, ids)
        keys = lm._cache.layers[0].keys
        lm.setup_cache(BATCH, 20, "static")
        assert lm._cache.layers[0].keys is keys, "same arguments must not reallocate"
        assert not keys.any(), "a reset static cache is zeroed"
        torch.testing.assert_close(cached_logits(lm, ids), first, atol=0, rtol=0)
        lm.reset_cache()
        torch.testing.assert_close(cached_logits(lm, ids), first, atol=0, rtol=0)
        lm.setup_cache(BATCH, 24, "static")
        assert lm._cache.layers[0].keys.shape[2] == 24


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_bfloat16_model_gets_a_bfloat16_cache(arch: str) -> None:
    lm = TransformersCausalLM(tiny_model(arch))
    with torch.inference_mode():
        lm.setup_cache(BATCH, 20, "static")
        lm.to(torch.bfloat16)
        assert lm.model.get_input_embeddings().weight.dtype == torch.bfloat16  # the cast reached the weights
        lm.setup_cache(BATCH, 20, "static")  # same arguments, new dtype: reallocated
        assert lm._cache.layers[0].keys.dtype == torch.bfloat16
        assert lm.cache_bytes() == lm.kv_shape().bytes_for(20, BATCH, 2)
        logits = cached_logits(lm, tokens())
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


def test_deepcopy_gives_an_independent_model() -> None:
    lm = TransformersCausalLM(tiny_model("gpt2"))
    lm.setup_cache(BATCH, 20, "static")
    twin = copy.deepcopy(lm)
    with torch.no_grad():
        next(twin.parameters()).add_(1.0)
    assert not torch.equal(next(twin.parameters()), next(lm.parameters()))
    assert twin._cache.layers[0].keys is not lm._cache.layers[0].keys


def test_bad_cache_requests_are_one_line_value_errors() -> None:
    lm = TransformersCausalLM(tiny_model("llama"))
    with pytest.raises(ValueError, match=r"call setup_cache before a forward with input_pos"):
        lm(tokens(), torch.arange(PROMPT + STEPS))
    with pytest.raises(ValueError, match=r"cache kind must be one of static, dynamic, got 'paged'"):
        lm.setup_cache(BATCH, 20, "paged")
    with pytest.raises(ValueError, match=r"cache length must be between 1 and the model's 64, got 65"):
        lm.setup_cache(BATCH, 65, "static")
    with pytest.raises(ValueError, match=r"Linear is not a transformers causal LM"):
        TransformersCausalLM(torch.nn.Linear(2, 2))


def test_is_transformers_causal_lm(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model("llama")
    assert is_transformers_causal_lm(model)
    assert not is_transformers_causal_lm(TransformersCausalLM(model))  # the adapter is ours, not theirs
    assert not is_transformers_causal_lm(torch.nn.Linear(2, 2))
    bert = transformers.BertModel(
        transformers.BertConfig(
            hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, vocab_size=32
        )
    )
    assert not is_transformers_causal_lm(bert)  # a transformers model with no LM head
    # Without transformers' modeling code imported, nothing can be one of its models (nor is it imported to check).
    monkeypatch.delitem(sys.modules, "transformers.modeling_utils")
    assert not is_transformers_causal_lm(model)
    assert "transformers.modeling_utils" not in sys.modules


# --- hf:PATH folders


def test_folder_with_safetensors_loads_the_saved_weights(tmp_path: Path) -> None:
    original = tiny_model("llama")
    original.save_pretrained(tmp_path)
    assert list(tmp_path.glob("*.safetensors"))
    spec = load_hf_folder(str(tmp_path))
    assert (spec.name, spec.family, spec.item, spec.workload, spec.sizes) == (
        f"hf:{tmp_path}",
        "transformer",
        "token",
        "generate",
        ("custom",),
    )
    assert "weights from 1 *.safetensors file" in spec.description
    lm = spec.build("custom")
    assert isinstance(lm, TransformersCausalLM) and not lm.training
    assert spec.build("custom") is not lm
    ids = tokens()
    with torch.inference_mode():
        torch.testing.assert_close(lm(ids), original(input_ids=ids, use_cache=False).logits, atol=0, rtol=0)
    assert load_hf_folder(f"hf:{tmp_path}").name == f"hf:{tmp_path}"  # the prefix may come along


def test_folder_with_config_only_builds_seeded_random_weights(tmp_path: Path) -> None:
    gpt2_config().save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    spec = load_hf_folder(str(tmp_path))
    assert "random weights" in spec.description
    a, b = spec.build("custom"), spec.build("custom")
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    with torch.no_grad():
        next(a.parameters()).add_(1.0)
    assert not torch.equal(next(a.parameters()), next(b.parameters())), "builds must be independent copies"


def test_example_inputs_are_seeded_prompts(tmp_path: Path) -> None:
    llama_config().save_pretrained(tmp_path)
    spec = load_hf_folder(str(tmp_path))
    (prompt,) = spec.example_inputs(3, "custom", 0)
    assert prompt.shape == (3, 16) and prompt.dtype == torch.int64
    assert int(prompt.min()) >= 0 and int(prompt.max()) < VOCAB
    assert torch.equal(prompt, spec.example_inputs(3, "custom", 0)[0])
    assert not torch.equal(prompt, spec.example_inputs(3, "custom", 1)[0])


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", r"no such folder$"),
        ("no_config", r"the folder has no config\.json$"),
        ("not_json", r"config\.json is not a transformers config \(OSError: "),
        ("unknown_type", r"config\.json is not a transformers config \(ValueError: "),
        ("not_causal", r"config\.json is a 't5' model, not a causal LM transformers knows$"),
        ("bin_only", r"only \*\.bin weights; genbench loads \*\.safetensors only"),
    ],
)
def test_bad_folders_are_one_line_value_errors(tmp_path: Path, setup: str, message: str) -> None:
    folder = tmp_path / "model"
    if setup != "missing":
        folder.mkdir()
    configs = {
        "not_json": "{not json",
        "unknown_type": json.dumps({"model_type": "no-such-architecture"}),
        "not_causal": json.dumps({"model_type": "t5"}),
    }
    if setup in configs:
        (folder / "config.json").write_text(configs[setup])
    if setup == "bin_only":
        llama_config().save_pretrained(folder)
        (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match=message) as info:
        load_hf_folder(str(folder))
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"hf:{folder}: ")


def test_without_transformers_the_error_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    llama_config().save_pretrained(tmp_path)
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    with pytest.raises(ValueError, match=r"^hf: models need transformers: pip install 'genbench\[hf\]'$"):
        load_hf_folder(str(tmp_path))

"""The generate workload: the greedy loop on a fake causal LM and a simulated GPU, then whole cells on CPU.

The loop's contract is checked with a model that counts its calls and a step clock
of fake device events that logs every record and synchronize; the cells run the
tiny ``gpt`` and tiny transformers models through the harness at ``--isolation none``.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from bench.core.device import Device
from bench.harness import generate as generate_module
from bench.harness.config import RunConfig
from bench.harness.generate import generate
from bench.harness.plan import plan_cells, resolve_models, resolve_pipelines
from bench.harness.runner import Runner
from bench.measure.step_clock import EventStepClock, HostStepClock
from bench.results.store import read_cells, read_samples
from bench.results.writer import ResultWriter
from reference_models.causal_lm import KVShape, interface_problem
from tests.conftest import FAST

PROMPT, NEW = 8, 6
#: the tiny gpt's cache layout: 2 layers x 2 KV heads x head dim 16
GPT_TINY_KV = KVShape(layers=2, kv_heads=2, head_dim=16)
GENERATE = {**FAST, "prompt_len": PROMPT, "new_tokens": NEW, "time_budget_s": 0.1, "min_samples": 2}


class FakeDevice:
    """Device time in ms (each forward call costs ``step_ms`` of it) and a log of what ran, in order."""

    def __init__(self) -> None:
        self.now_ms = 0.0
        self.log: list[str] = []
        self.made = 0

    def make_event(self) -> FakeEvent:
        self.made += 1
        return FakeEvent(self)

    def count(self, what: str) -> int:
        return self.log.count(what)


class FakeEvent:
    def __init__(self, device: FakeDevice) -> None:
        self.device = device
        self.when: float | None = None

    def record(self) -> None:
        self.when = self.device.now_ms
        self.device.log.append("record")

    def synchronize(self) -> None:
        self.device.log.append("synchronize")

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.when is not None and end.when is not None
        return end.when - self.when


class FakeLM(nn.Module):
    """The causal-LM interface with nothing inside: logits favour ``favoured`` (or, with ``favoured`` None,
    the token after the last one fed), every call is recorded, and each call spends fake device time."""

    vocab_size = 16
    max_seq_len = 64

    def __init__(self, device: FakeDevice, favoured: int | None, prefill_ms: float = 5.0) -> None:
        super().__init__()
        self.device = device
        self.favoured = favoured
        self.prefill_ms = prefill_ms
        self.calls: list[tuple[list[list[int]], list[int] | None]] = []
        self.resets = 0

    def kv_shape(self) -> KVShape:
        return KVShape(1, 1, 2)

    def setup_cache(self, batch_size: int, max_len: int, kind: str) -> None:
        pass

    def reset_cache(self) -> None:
        self.resets += 1

    def cache_bytes(self) -> int:
        return 0

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        # copied now: the loop advances its position tensor in place after the call
        self.calls.append((tokens.tolist(), None if input_pos is None else input_pos.tolist()))
        self.device.log.append("forward")
        self.device.now_ms += self.prefill_ms if len(self.calls) == 1 else 1.0
        batch, length = tokens.shape
        logits = torch.zeros(batch, length, self.vocab_size)
        if self.favoured is not None:
            logits[..., self.favoured] = 1.0
        else:
            logits.scatter_(2, ((tokens + 1) % self.vocab_size)[..., None], 1.0)
        return logits


def prompt(batch: int = 2) -> torch.Tensor:
    return torch.arange(batch * PROMPT).reshape(batch, PROMPT) % FakeLM.vocab_size


def test_the_fake_follows_the_interface() -> None:
    assert interface_problem(FakeLM(FakeDevice(), 3)) is None


def test_one_prefill_then_n_minus_1_decode_calls_and_n_marks() -> None:
    device = FakeDevice()
    lm = FakeLM(device, favoured=3)
    clock = EventStepClock(device.make_event)
    tokens, logits = generate(lm, prompt(), NEW, clock)
    assert logits is None
    assert len(lm.calls) == NEW and lm.resets == 1
    first_tokens, first_pos = lm.calls[0]
    assert first_tokens == prompt().tolist() and first_pos == list(range(PROMPT))
    decode_positions = [pos for _, pos in lm.calls[1:]]
    assert decode_positions == [[p] for p in range(PROMPT, PROMPT + NEW - 1)]
    assert all(len(t[0]) == 1 for t, _ in lm.calls[1:])  # one token per sequence per decode step
    assert device.count("record") == 1 + NEW  # the start, then one mark per new token
    # the start is recorded before the prefill; every mark after the forward call that made its token
    assert device.log[:3] == ["record", "forward", "record"]
    assert device.count("synchronize") == 0  # the loop never waits
    assert clock.times_ms() == pytest.approx([5.0 + i for i in range(NEW)])
    assert device.count("synchronize") == 1  # one per generation, when its times are read


def test_every_generation_of_a_cell_synchronizes_once_and_reuses_its_events() -> None:
    device = FakeDevice()
    lm = FakeLM(device, favoured=3)
    clock = EventStepClock(device.make_event)
    for _ in range(3):
        generate(lm, prompt(), NEW, clock)
        assert len(clock.times_ms()) == NEW
    assert device.count("synchronize") == 3
    assert device.made == NEW + 1  # made in the first generation, reused after


def test_the_length_is_fixed_even_when_the_model_emits_an_end_token() -> None:
    end_token = 0
    lm = FakeLM(FakeDevice(), favoured=end_token)  # every step "ends" the sequence
    tokens, _ = generate(lm, prompt(), NEW, HostStepClock())
    assert tokens.shape == (2, NEW)
    assert (tokens == end_token).all()
    assert len(lm.calls) == NEW


def test_free_running_feeds_the_models_own_argmax() -> None:
    lm = FakeLM(FakeDevice(), favoured=None)  # next token = last fed + 1
    start = prompt()
    tokens, _ = generate(lm, start, NEW, HostStepClock())
    last = start[:, -1:]
    expected = (last + torch.arange(1, NEW + 1)) % FakeLM.vocab_size
    assert torch.equal(tokens, expected)
    fed = [t for t, _ in lm.calls[1:]]
    assert fed == [tokens[:, i : i + 1].tolist() for i in range(NEW - 1)]


def test_teacher_forcing_feeds_the_given_tokens_and_keeps_fp32_logits() -> None:
    lm = FakeLM(FakeDevice(), favoured=None)
    teacher = torch.tensor([[9, 4, 7, 1, 12, 2], [3, 3, 3, 3, 3, 3]])
    tokens, logits = generate(lm, prompt(), NEW, HostStepClock(), teacher=teacher, keep_logits=True)
    fed = [t for t, _ in lm.calls[1:]]
    assert fed == [teacher[:, i : i + 1].tolist() for i in range(NEW - 1)]  # not the model's own tokens
    assert torch.equal(tokens[:, 1:], (teacher[:, :-1] + 1) % FakeLM.vocab_size)  # conditioned on the teacher
    assert logits is not None and logits.shape == (2, NEW, FakeLM.vocab_size)
    assert logits.dtype == torch.float32 and logits.device.type == "cpu"
    assert torch.equal(logits.argmax(-1), tokens)


# --- whole cells through the harness ---------------------------------------------------------------


def run_cells(out: Path, **config: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run a matrix in this process on CPU; the cells and samples tables as written to ``out``."""
    cfg = RunConfig(**{**GENERATE, **config})  # type: ignore[arg-type]
    device = Device("cpu")
    specs = resolve_models(cfg.models, cfg.custom_models, cfg.weights)
    pipelines = resolve_pipelines(cfg.pipelines, device)
    Runner(cfg, device, ResultWriter(out), run_id="test").run(
        plan_cells(specs, cfg.size, pipelines, cfg.batch_sizes)
    )
    return read_cells(out), read_samples(out)


def check_phases(cells: pd.DataFrame, samples: pd.DataFrame, new_tokens: int) -> None:
    """samples.csv holds, per ok cell, one generate, one prefill and N-1 decode samples per timed generation,
    and each generation's time is its prefill plus its decode steps."""
    for row in cells[cells["status"] == "ok"].itertuples():
        mine = samples[samples["cell_id"] == row.cell_id]
        counts = mine["phase"].value_counts().to_dict()
        n = row.n_samples
        assert n >= 1
        assert counts == {"generate": n, "prefill": n, "decode": (new_tokens - 1) * n}, counts
        decode = mine[mine["phase"] == "decode"]
        assert sorted(set(decode["step"])) == list(range(1, new_tokens))
        by_iter = mine[mine["phase"] != "generate"].groupby("iter")["latency_ms"].sum()
        whole = mine[mine["phase"] == "generate"].set_index("iter")["latency_ms"]
        assert by_iter.sort_index().to_numpy() == pytest.approx(whole.sort_index().to_numpy())
        prefill = mine[mine["phase"] == "prefill"]["latency_ms"]
        assert row.ttft_ms == pytest.approx(prefill.median())


def test_gpt_tiny_generates_in_fp32_and_bf16_with_a_static_cache(tmp_path: Path) -> None:
    batch = 2
    cells, samples = run_cells(
        tmp_path / "run", models=("gpt",), pipelines=("fp32", "bf16"), batch_sizes=(2,)
    )
    assert list(cells["status"]) == ["ok", "ok"], cells["reason"].tolist()
    assert list(cells["workload"]) == ["generate", "generate"]
    fp32, bf16 = cells.iloc[0], cells.iloc[1]
    assert fp32["token_match"] == 1.0 and fp32["kl_div"] == 0.0  # the reference itself
    assert fp32["greedy_match_len"] == NEW
    assert 0.0 <= bf16["token_match"] <= 1.0 and bf16["kl_div"] >= 0.0
    assert 0.0 <= bf16["greedy_match_len"] <= NEW
    for row, element_size in ((fp32, 4), (bf16, 2)):
        expected = GPT_TINY_KV.bytes_for(PROMPT + NEW, batch, element_size) / 2**20
        assert row["kv_cache_mb"] == pytest.approx(expected)
        assert row["kv_cache"] == "static"
        assert (row["prompt_len"], row["new_tokens"]) == (PROMPT, NEW)
        assert "kv cache holds" not in row["notes"]
        assert row["ttft_ms"] > 0 and row["e2e_ms"] >= row["ttft_ms"]
        assert row["tpot_ms"] > 0 and row["output_tokens_s"] > 0 and row["prefill_tokens_s"] > 0
    assert fp32["kv_cache_mb"] == pytest.approx(2 * 2 * 2 * 16 * 4 * (8 + 6) * 2 / 2**20)
    check_phases(cells, samples, NEW)


def test_gpt_tiny_with_a_dynamic_cache_holds_the_tokens_written(tmp_path: Path) -> None:
    cells, samples = run_cells(
        tmp_path / "run", models=("gpt",), pipelines=("fp32",), batch_sizes=(1,), kv_cache="dynamic"
    )
    row = cells.iloc[0]
    assert row["status"] == "ok", row["reason"]
    assert row["kv_cache"] == "dynamic"
    # after the last decode step the cache holds the prompt and every new token but the last
    assert row["kv_cache_mb"] == pytest.approx(GPT_TINY_KV.bytes_for(PROMPT + NEW - 1, 1, 4) / 2**20)
    assert row["token_match"] == 1.0 and row["kl_div"] == 0.0
    assert "kv cache holds" not in row["notes"]
    check_phases(cells, samples, NEW)


def test_a_timed_generation_synchronizes_once_on_a_simulated_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cell's own loop with CUDA-like events: one synchronize per generation, events made once."""

    class WallEvent(FakeEvent):
        def record(self) -> None:
            super().record()
            self.when = time.perf_counter() * 1e3

    device = FakeDevice()
    monkeypatch.setattr(
        generate_module, "step_clock_for", lambda _: EventStepClock(lambda: WallEvent(device))
    )
    cells, _ = run_cells(tmp_path / "run", models=("gpt",), pipelines=("fp32",), batch_sizes=(1,))
    assert cells.iloc[0]["status"] == "ok", cells.iloc[0]["reason"]
    generations = device.count("record") // (NEW + 1)
    assert device.count("record") == generations * (NEW + 1)
    assert generations >= cells.iloc[0]["n_samples"] + 1  # warm-up and timed generations
    assert device.count("synchronize") == generations


# --- transformers models -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_transformers_llama_from_a_factory_generates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("transformers")
    module = "genbench_test_llama_factory"
    (tmp_path / f"{module}.py").write_text(
        "import transformers\n"
        "def make():\n"
        "    config = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128,\n"
        "        num_attention_heads=4, num_key_value_heads=2, vocab_size=128, max_position_embeddings=64)\n"
        "    return transformers.LlamaForCausalLM(config)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    cells, samples = run_cells(
        tmp_path / "run",
        models=(),
        custom_models=(f"{module}:make",),
        pipelines=("fp32", "bf16"),
        batch_sizes=(2,),
    )
    assert list(cells["status"]) == ["ok", "ok"], cells["reason"].tolist()
    assert list(cells["workload"]) == ["generate", "generate"]
    assert cells.iloc[0]["token_match"] == 1.0 and cells.iloc[0]["kl_div"] == 0.0
    assert 0.0 <= cells.iloc[1]["token_match"] <= 1.0
    llama_kv = KVShape(layers=2, kv_heads=2, head_dim=16)
    for row, element_size in zip(cells.itertuples(), (4, 2), strict=True):
        assert row.kv_cache_mb == pytest.approx(llama_kv.bytes_for(PROMPT + NEW, 2, element_size) / 2**20)
        assert "kv cache holds" not in row.notes
    check_phases(cells, samples, NEW)


@pytest.mark.parametrize("with_weights", [True, False], ids=["weights", "config-only"])
def test_an_hf_folder_generates(tmp_path: Path, with_weights: bool) -> None:
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "gpt2"
    config = transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    if with_weights:
        torch.manual_seed(3)
        transformers.GPT2LMHeadModel(config).save_pretrained(folder)
        assert list(folder.glob("*.safetensors"))
    else:
        config.save_pretrained(folder)
        assert not list(folder.glob("*.safetensors"))
    cells, samples = run_cells(
        tmp_path / "run",
        models=(),
        custom_models=(f"hf:{folder}",),
        pipelines=("fp32", "bf16"),
        batch_sizes=(1,),
    )
    assert list(cells["status"]) == ["ok", "ok"], cells["reason"].tolist()
    assert list(cells["model"]) == [f"hf:{folder}"] * 2
    assert cells.iloc[0]["token_match"] == 1.0 and cells.iloc[0]["kl_div"] == 0.0
    assert 0.0 <= cells.iloc[1]["token_match"] <= 1.0
    gpt2_kv = KVShape(layers=2, kv_heads=4, head_dim=16)
    assert cells.iloc[0]["kv_cache_mb"] == pytest.approx(gpt2_kv.bytes_for(PROMPT + NEW, 1, 4) / 2**20)
    assert not math.isnan(cells.iloc[1]["tpot_ms"])
    check_phases(cells, samples, NEW)

"""Text generation, measured: TTFT, TPOT and ITL from step times; bandwidth of decode; token fidelity.

The definitions (the README's table says them too), for one generation of ``new``
tokens from a prompt of ``prompt`` tokens at batch ``batch``, with step times
``t_1 .. t_new`` in ms from the moment the prompt goes in (``t_1`` is when the first
new token exists: prefill plus its argmax):

- ``ttft_ms`` = t_1 (time to first token, prefill included);
- ``tpot_ms`` = (t_new - t_1) / (new - 1), per sequence (time per output token after the first);
- ``itl_ms_p50`` / ``itl_ms_p99``: percentiles of the decode steps' own latencies t_i - t_{i-1};
- ``e2e_ms`` = t_new;
- ``output_tokens_s`` = batch x new / e2e (what a server gets out of the batch);
- ``tokens_s_per_seq`` = 1 / tpot (what one user sees while tokens stream);
- ``prefill_tokens_s`` = batch x prompt / ttft.

A cell repeats whole generations; each of its columns is the median over them (the
ITL percentiles pool every decode step of every timed generation).

Fidelity against the fp32 model on the same prompt is teacher-forced: the pipeline is
fed the fp32 model's tokens, so one flipped token does not make every later position
differ. ``token_match`` is the share of positions whose next-token argmax agrees,
``kl_div`` the mean KL(fp32 || pipeline) of the next-token distributions (nats), and
``greedy_match_len`` the free-running figure: tokens of the pipeline's own greedy
generation before it first departs from the fp32 one, averaged over the batch's
sequences. Random weights give near-flat distributions whose argmax flips at the
slightest rounding, so ``token_match`` is pessimistic there; real checkpoints
(``--weights``, ``hf:``) give the real figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median
from typing import Any, ClassVar

import numpy as np
import torch

from bench.core.columns import RowPart

#: the default --min-token-match: the share of teacher-forced argmaxes that must agree with fp32
DEFAULT_MIN_TOKEN_MATCH = 0.9


@dataclass(frozen=True)
class GenerationTimes:
    """The step times (ms from the prompt going in) of each timed generation of a cell."""

    batch: int
    prompt: int
    new: int
    steps_ms: tuple[tuple[float, ...], ...]  # one tuple of ``new`` increasing times per generation

    def __post_init__(self) -> None:
        if not self.steps_ms:
            raise ValueError("no timed generation")
        for times in self.steps_ms:
            if len(times) != self.new:
                raise ValueError(f"a generation of {self.new} tokens has {len(times)} step times")

    def ttfts(self) -> list[float]:
        return [times[0] for times in self.steps_ms]

    def e2es(self) -> list[float]:
        return [times[-1] for times in self.steps_ms]

    def tpots(self) -> list[float]:
        if self.new < 2:
            return [math.nan] * len(self.steps_ms)
        return [(times[-1] - times[0]) / (self.new - 1) for times in self.steps_ms]

    def itls(self) -> list[float]:
        return [b - a for times in self.steps_ms for a, b in zip(times, times[1:], strict=False)]


@dataclass(frozen=True)
class GenerationMetrics(RowPart):
    """The generate workload's timing columns, from ``GenerationTimes`` and what the cache and peak say."""

    prompt_len: int
    new_tokens: int
    kv_cache: str  # static | dynamic
    ttft_ms: float
    tpot_ms: float
    itl_ms_p50: float
    itl_ms_p99: float
    e2e_ms: float
    output_tokens_s: float
    tokens_s_per_seq: float
    prefill_tokens_s: float
    kv_cache_mb: float
    decode_gb_s: float
    pct_of_bandwidth: float
    energy_j_per_token_prefill: float = math.nan
    energy_j_per_token_decode: float = math.nan

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "prompt_len", "new_tokens", "kv_cache", "ttft_ms", "tpot_ms", "itl_ms_p50", "itl_ms_p99", "e2e_ms",
        "output_tokens_s", "tokens_s_per_seq", "prefill_tokens_s", "kv_cache_mb", "decode_gb_s",
        "pct_of_bandwidth", "energy_j_per_token_prefill", "energy_j_per_token_decode",
    )  # fmt: skip

    @classmethod
    def of(
        cls,
        times: GenerationTimes,
        kv_cache: str,
        cache_bytes: int,
        decode_bytes_per_step: float,
        copy_bytes_s: float | None,
    ) -> GenerationMetrics:
        """``decode_bytes_per_step``: weights plus the KV cache one decode step reads (see ``decode_bytes``)."""
        ttft, e2e = median(times.ttfts()), median(times.e2es())
        tpots = [t for t in times.tpots() if not math.isnan(t)]
        tpot = median(tpots) if tpots else math.nan
        itls = times.itls()
        p50, p99 = (float(np.percentile(itls, q)) for q in (50, 99)) if itls else (math.nan, math.nan)
        gb_s = decode_bytes_per_step / (tpot / 1e3) / 1e9 if tpot > 0 else math.nan
        pct = 100.0 * gb_s * 1e9 / copy_bytes_s if copy_bytes_s and not math.isnan(gb_s) else math.nan
        return cls(
            prompt_len=times.prompt,
            new_tokens=times.new,
            kv_cache=kv_cache,
            ttft_ms=ttft,
            tpot_ms=tpot,
            itl_ms_p50=p50,
            itl_ms_p99=p99,
            e2e_ms=e2e,
            output_tokens_s=times.batch * times.new / (e2e / 1e3),
            tokens_s_per_seq=1e3 / tpot if tpot > 0 else math.nan,
            prefill_tokens_s=times.batch * times.prompt / (ttft / 1e3),
            kv_cache_mb=cache_bytes / 2**20,
            decode_gb_s=gb_s,
            pct_of_bandwidth=pct,
        )


def decode_bytes(weight_bytes: int, cache_bytes_end: int, kind: str, prompt: int, new: int) -> float:
    """Bytes one decode step reads, on average: every weight once, plus the keys and values it attends over.

    A static cache is attended over in full (its unwritten slots masked, not skipped),
    so each step reads all of it; a dynamic one holds ``prompt + i`` positions at decode
    step i (1 .. new - 1), ``prompt + new / 2`` on average, and ``cache_bytes_end``
    holds ``prompt + new - 1`` of them.
    """
    if kind == "static":
        return float(weight_bytes + cache_bytes_end)
    held = prompt + new - 1
    return weight_bytes + cache_bytes_end * (prompt + new / 2) / held if held else float(weight_bytes)


@dataclass(frozen=True)
class TokenFidelity(RowPart):
    """Next-token agreement with the fp32 model (module docstring), and the gate ``fidelity_ok`` applies."""

    token_match: float
    kl_div: float
    greedy_match_len: float
    min_token_match: float = DEFAULT_MIN_TOKEN_MATCH

    COLUMNS: ClassVar[tuple[str, ...]] = ("token_match", "kl_div", "greedy_match_len")

    @property
    def ok(self) -> bool:
        return self.token_match >= self.min_token_match

    def columns(self) -> dict[str, Any]:
        return {
            "token_match": self.token_match,
            "kl_div": self.kl_div,
            "greedy_match_len": self.greedy_match_len,
        }


def token_fidelity(
    ref_logits: torch.Tensor,
    logits: torch.Tensor,
    ref_tokens: torch.Tensor,
    tokens: torch.Tensor,
    min_token_match: float = DEFAULT_MIN_TOKEN_MATCH,
) -> TokenFidelity:
    """Compare teacher-forced next-token logits ([B, N, V] each) and free-running tokens ([B, N] each)."""
    if ref_logits.shape != logits.shape:
        raise ValueError(
            f"logits shape {tuple(logits.shape)} differs from reference {tuple(ref_logits.shape)}"
        )
    if ref_tokens.shape != tokens.shape:
        raise ValueError(
            f"tokens shape {tuple(tokens.shape)} differs from reference {tuple(ref_tokens.shape)}"
        )
    ref = ref_logits.detach().double().cpu()
    out = logits.detach().double().cpu()
    if not torch.isfinite(out).all():
        return TokenFidelity(0.0, math.inf, 0.0, min_token_match)
    match = float((out.argmax(-1) == ref.argmax(-1)).double().mean())
    ref_logp, out_logp = ref.log_softmax(-1), out.log_softmax(-1)
    kl = float((ref_logp.exp() * (ref_logp - out_logp)).sum(-1).mean())
    return TokenFidelity(match, max(kl, 0.0), greedy_match_length(ref_tokens, tokens), min_token_match)


def greedy_match_length(ref_tokens: torch.Tensor, tokens: torch.Tensor) -> float:
    """Tokens before each sequence first differs from the reference ([B, N] each), averaged over the batch."""
    same = (ref_tokens.cpu() == tokens.cpu()).long()
    # cumprod stays 1 until the first mismatch: its sum is the length of the agreeing prefix
    return float(same.cumprod(dim=1).sum(dim=1).double().mean())

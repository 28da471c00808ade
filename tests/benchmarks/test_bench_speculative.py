"""Speculative decoding speed, same GGUF, prompts and settings, ratios measured in one process.

- Prompt lookup on SmolLM2-135M (a real text model): a reply that repeats its context (editing a
  code block; restating the question) and one that does not (a story). Targets on this CPU:
  >= 1.3x on repeating text, >= 0.95x on the rest (it must not slow ordinary chat). Measured on
  SmolLM2 dequantized to F32 (540 MB): its decode is memory-bound like QwQ-32B's on any machine
  (a batch of 8 tokens costs ~2.3x one token here). The shipped Q4_1 file is compute-bound on this
  CPU (a batch of 8 costs ~4x one token), the worst case for speculation: printed, not asserted.
- A draft model that agrees with its target (the tiny QwQ-shaped model as bf16 target, its Q8_0
  copy as draft): acceptance rate and tokens per main pass, and the speed ratio, which on a CPU
  is below 1 here because the draft costs as much as the target (on a GPU with QwQ-32B and
  Qwen2.5-0.5B the draft is ~60x cheaper; packaging/gpu-check.sh measures it there).

Greedy sampling (top_k 1), so both runs emit the same tokens; the prompt is cached before timing
(both evaluate one prompt token), each figure is wall time over TOKENS tokens, runs alternate
and the median of the paired ratios is reported (one run alone moves by +-10% on this shared
machine).
"""

from __future__ import annotations

import ctypes
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import llama_cpp
import pytest
from conftest import cached_build
from qwq_chat.app.engines.llama_engine import LlamaEngine
from qwq_chat.app.sampling import Sampling

pytestmark = pytest.mark.benchmark
GREEDY = Sampling(top_k=1, seed=0)
TOKENS = 160
ROUNDS = 3
CODE = "\n".join(
    f"def step_{i}(values):\n    total = 0\n    for v in values:\n        total += v * {i}\n"
    f"    return total\n"
    for i in range(6)
)
REPEATING = [
    f"Here is a module:\n\n```python\n{CODE}```\n\nRepeat the module exactly, with a docstring "
    "added to each function.",
    "Question: a train leaves at 9:00 and travels 60 km at 40 km/h, then 30 km at 60 km/h. "
    "When does it arrive? Restate the question word for word first, then solve it.",
]
ORDINARY = ["Write a short story about a dragon who learns to bake bread."]


def timed(engine: LlamaEngine, prompt: str) -> tuple[float, int, object]:
    """Seconds for TOKENS tokens (prompt already cached), tokens made, the stats."""
    messages = [{"role": "user", "content": prompt}]
    started = time.perf_counter()
    count, stats = 0, None
    for chunk in engine.stream(messages, GREEDY, TOKENS):
        count += chunk.tokens
        stats = chunk.stats or stats
    return time.perf_counter() - started, count, stats


def speedup(plain: LlamaEngine, fast: LlamaEngine, prompts: list[str]) -> tuple[float, list]:
    """Median over rounds and prompts of plain time / speculative time; the speculative stats."""
    ratios, stats = [], []
    for prompt in prompts:
        timed(plain, prompt)  # cache the prompt in both
        timed(fast, prompt)
        for r in range(ROUNDS):
            order = [(plain, 0), (fast, 1)] if r % 2 == 0 else [(fast, 1), (plain, 0)]
            seconds = [0.0, 0.0]
            counts = [0, 0]
            for engine, slot in order:
                seconds[slot], counts[slot], s = timed(engine, prompt)
                if slot:
                    stats.append(s)
            assert counts[0] == counts[1]  # lossless: the same tokens
            ratios.append(seconds[0] / seconds[1])
    return statistics.median(ratios), stats


def report(name: str, ratio: float, stats: list) -> None:
    rates = [s.draft_acceptance_rate for s in stats if s.draft_acceptance_rate is not None]
    per_pass = [s.tokens_per_pass for s in stats if s.tokens_per_pass is not None]
    print(
        f"\n{name}: speed-up {ratio:.2f}x, acceptance "
        f"{statistics.median(rates) if rates else 0:.0%}, tokens per main pass "
        f"{statistics.median(per_pass) if per_pass else 1:.2f}"
    )


def smollm_f32(smollm_gguf: Path) -> Path:
    """SmolLM2 dequantized to F32 with llama.cpp's quantize (cached like the tiny models)."""

    def build(tmp: Path) -> None:
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = 0  # LLAMA_FTYPE_ALL_F32
        params.allow_requantize = True
        out = tmp / "model.gguf"
        rc = llama_cpp.llama_model_quantize(
            str(smollm_gguf).encode(), str(out).encode(), ctypes.byref(params)
        )
        assert rc == 0, f"llama_model_quantize returned {rc}"

    return cached_build("smollm2-135m-f32", build) / "model.gguf"


def prompt_lookup(model: Path) -> tuple[float, list, float, list]:
    plain = LlamaEngine(model, n_ctx=2048, flash_attn=True)
    fast = LlamaEngine(model, n_ctx=2048, draft="ngram")
    try:
        repeating, stats_r = speedup(plain, fast, REPEATING)
        ordinary, stats_o = speedup(plain, fast, ORDINARY)
    finally:
        plain.close()
        fast.close()
    return repeating, stats_r, ordinary, stats_o


def test_prompt_lookup_speedup(smollm_gguf: Path) -> None:
    repeating, stats_r, ordinary, stats_o = prompt_lookup(smollm_f32(smollm_gguf))
    report("prompt lookup, repeating text (F32, memory-bound)", repeating, stats_r)
    report("prompt lookup, ordinary text (F32, memory-bound)", ordinary, stats_o)
    q_repeating, q_stats_r, q_ordinary, q_stats_o = prompt_lookup(smollm_gguf)
    report("prompt lookup, repeating text (Q4_1, compute-bound)", q_repeating, q_stats_r)
    report("prompt lookup, ordinary text (Q4_1, compute-bound)", q_ordinary, q_stats_o)
    assert repeating >= 1.3
    assert ordinary >= 0.95


def test_draft_model_that_agrees(tiny_gguf_factory: Callable[[str], Path]) -> None:
    target, draft = tiny_gguf_factory("bf16"), tiny_gguf_factory("q8_0")
    plain = LlamaEngine(target, n_ctx=2048, flash_attn=True)
    fast = LlamaEngine(target, n_ctx=2048, draft=draft)
    try:
        ratio, stats = speedup(plain, fast, [*REPEATING[:1], *ORDINARY])
    finally:
        plain.close()
        fast.close()
    report("draft model (Q8_0 copy of the target)", ratio, stats)
    assert statistics.median(s.draft_acceptance_rate for s in stats) > 0.8

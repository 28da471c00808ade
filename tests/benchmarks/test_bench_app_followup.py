"""Multi-turn cost: prompt tokens llama.cpp actually evaluates on turn 5 vs turn 1 (KV cache reuse).

Same-size user messages; figures from llama.cpp's perf counters (`llama_perf_context.n_p_eval`).
Without reuse turn 5 would re-evaluate the whole conversation (many times turn 1). Target <= 1.5.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from qwq_chat.app.engines.llama_engine import LlamaEngine
from qwq_chat.app.events import Stats
from qwq_chat.app.sampling import Limits, Sampling
from qwq_chat.app.session import Session
from qwq_chat.app.store import open_store

pytestmark = pytest.mark.benchmark
MESSAGES = [f"Tell me one fact about the number {n}, briefly." for n in (11, 12, 13, 14, 15)]


def test_follow_up_turn_processes_only_what_changed(smollm_gguf: Path) -> None:
    engine = LlamaEngine(smollm_gguf, n_ctx=4096)
    session = Session(open_store(), engine, sampling=Sampling(seed=7), limits=Limits(max_tokens=48))
    rows = []
    for turn, text in enumerate(MESSAGES, 1):
        [stats] = [e for e in session.send(text) if isinstance(e, Stats)]
        rows.append((turn, stats.prompt_tokens, stats.prompt_tokens_processed))
        print(
            f"turn {turn}: prompt {stats.prompt_tokens} tokens, evaluated {stats.prompt_tokens_processed}"
        )
    ratio = rows[4][2] / rows[0][2]
    naive = rows[4][1] / rows[0][1]
    print(f"\nBENCH app follow-up: evaluated prompt tokens turn5/turn1 = {ratio:.2f} (target <= 1.5); "
          f"without cache reuse it would be {naive:.2f}")  # fmt: skip
    engine.close()
    assert ratio <= 1.5

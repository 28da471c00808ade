"""The real llama.cpp path: tiny QwQ-shaped GGUF (from convert/) and SmolLM2-135M (coherent text)."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest
from qwq_chat.app.ask import ANSWER_HEADING, REASONING_HEADING, run_ask
from qwq_chat.app.config import load_settings
from qwq_chat.app.engines.llama_engine import LlamaEngine
from qwq_chat.app.events import AnswerDelta, Done, ReasoningDelta, Stats
from qwq_chat.app.sampling import Limits, Sampling
from qwq_chat.app.session import BUDGET_NOTICE, Session
from qwq_chat.app.store import Store, open_store


@pytest.fixture(scope="module")
def smollm_engine(smollm_gguf: Path):
    engine = LlamaEngine(smollm_gguf, n_ctx=2048)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def tiny_engine(tiny_gguf: Path):
    engine = LlamaEngine(tiny_gguf, n_ctx=2048)
    yield engine
    engine.close()


def test_ask_json_on_the_tiny_qwq_gguf(tiny_gguf: Path) -> None:
    settings = load_settings(model=str(tiny_gguf), n_ctx=1024, max_tokens=24)
    out, err = io.StringIO(), io.StringIO()
    assert run_ask(settings, "How many r's are in strawberry?", as_json=True, out=out, err=err) == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    types = [e["type"] for e in events]
    assert types[0] == "reasoning"  # QwQ's prompt opened <think>: output starts inside it
    assert types[-2:] == ["stats", "done"]
    stats = events[-2]
    assert stats["context_size"] == 1024 and stats["prompt_tokens"] > 10
    assert stats["prompt_tokens_processed"] == stats["prompt_tokens"]  # first turn: nothing cached
    assert 0 < stats["completion_tokens"] <= 24
    assert events[-1]["finish_reason"] in ("length", "stop")
    # saved like a TUI chat, reasoning apart from the answer
    [conv] = open_store().list_conversations()
    assistant = open_store().messages(conv.id)[-1]
    assert assistant.reasoning == "".join(e["text"] for e in events if e["type"] == "reasoning")


def test_ask_prints_coherent_text_from_smollm(smollm_gguf: Path) -> None:
    settings = load_settings(model=str(smollm_gguf), n_ctx=1024, max_tokens=40)
    settings.sampling = settings.sampling.replace(seed=2)
    out, err = io.StringIO(), io.StringIO()
    assert run_ask(settings, "What color is the sky on a clear day?", out=out, err=err) == 0
    text = out.getvalue()
    assert text.startswith(ANSWER_HEADING + "\n")  # ChatML model: no reasoning section
    assert REASONING_HEADING not in text
    assert "blue" in text.lower()
    assert "--- finish:" in err.getvalue() and "tok/s" in err.getvalue()


def test_non_qwq_gguf_uses_its_own_template(
    smollm_engine: LlamaEngine, tiny_engine: LlamaEngine
) -> None:
    assert smollm_engine.template.origin == "gguf" and "not a QwQ" in smollm_engine.template.reason
    prompt = smollm_engine.render_prompt([{"role": "user", "content": "hi"}])
    assert prompt.endswith("<|im_start|>assistant\n")
    assert tiny_engine.template.reason == "the model's template is QwQ's upstream one"
    assert tiny_engine.render_prompt([{"role": "user", "content": "hi"}]).endswith("<think>\n")


def test_follow_up_turn_reuses_the_kv_cache(smollm_engine: LlamaEngine) -> None:
    session = Session(
        Store(":memory:"), smollm_engine, sampling=Sampling(seed=1), limits=Limits(max_tokens=24)
    )
    stats: list[Stats] = []
    for text in ("Name a fruit.", "Name a vegetable.", "Name a tree."):
        stats += [e for e in session.send(text) if isinstance(e, Stats)]
    first, second, third = stats
    assert first.prompt_tokens_processed == first.prompt_tokens
    for turn in (second, third):
        # only the new user message (plus the chat markup) is evaluated, not the conversation
        new_tokens = turn.prompt_tokens - first.prompt_tokens
        assert turn.prompt_tokens_processed < turn.prompt_tokens / 2
        assert turn.prompt_tokens_processed <= 20, (turn, new_tokens)
    assert third.prompt_tokens > second.prompt_tokens > first.prompt_tokens


def test_reasoning_budget_on_the_real_engine(tiny_engine: LlamaEngine) -> None:
    session = Session(
        Store(":memory:"),
        tiny_engine,
        sampling=Sampling(seed=3),
        limits=Limits(max_tokens=30, reasoning_budget=6),
    )
    events = list(session.send("Think hard."))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert reasoning.endswith(BUDGET_NOTICE)
    stats = [e for e in events if isinstance(e, Stats)]
    assert stats[-1].prompt_tokens_processed < 40  # the continuation reused the cache
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason in ("reasoning_budget", "length")
    message = session.messages[-1]
    assert not message.reasoning_unfinished  # closed by the budget
    assert message.content == "".join(e.text for e in events if isinstance(e, AnswerDelta))


def test_cancel_stops_the_real_engine_and_keeps_text(tiny_engine: LlamaEngine) -> None:
    session = Session(
        open_store(), tiny_engine, sampling=Sampling(seed=4), limits=Limits(max_tokens=1500)
    )
    seen: list = []
    started = threading.Event()

    def consume() -> None:
        for event in session.send("Go on forever."):
            seen.append(event)
            if len(seen) == 5:
                started.set()

    worker = threading.Thread(target=consume)
    worker.start()
    assert started.wait(60)
    session.cancel()
    worker.join(30)
    assert not worker.is_alive()
    assert seen[-1].finish_reason == "cancelled"
    stored = session.store.messages(session.conversation_id)[-1]
    assert stored.finish_reason == "cancelled" and stored.reasoning
    assert stored.stats is not None and stored.stats["completion_tokens"] < 1500


def test_cancel_stops_a_long_prompt_evaluation_inside_llama_cpp(
    smollm_engine: LlamaEngine,
) -> None:
    """The abort callback is on while the prompt is evaluated (and off for one-token decode
    steps, where the stream loop checks between tokens): a cancel lands inside the evaluation."""
    import time

    engine = smollm_engine
    try:
        prompt = [{"role": "user", "content": "lighthouse keeper storm " * 150}]
        sampling = Sampling(seed=1)
        started = time.perf_counter()
        assert [c.finish_reason for c in engine.stream(prompt, sampling, 1)][-1] == "length"
        full = time.perf_counter() - started  # the whole prompt, evaluated once
        engine.llm.reset()  # forget the cache: the next call evaluates it all again
        timer = threading.Timer(full / 10, engine.cancel)
        timer.start()
        started = time.perf_counter()
        chunks = list(engine.stream(prompt, sampling, 1))
        cancelled_after = time.perf_counter() - started
        timer.join()
        assert chunks[-1].finish_reason == "cancelled"
        assert not any(c.text for c in chunks)
        assert cancelled_after < full / 2, (cancelled_after, full)
        # and the engine answers normally afterwards
        assert any(c.text for c in engine.stream([{"role": "user", "content": "Hi"}], sampling, 4))
    finally:
        engine.llm.reset()

"""Session rules with a scripted engine (deterministic); the real engines are tested elsewhere."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from qwq_chat.app.engine_protocol import Chunk
from qwq_chat.app.events import AnswerDelta, Done, ReasoningDelta, Stats, ToolCall, ToolResult
from qwq_chat.app.messages import FINISHED, UNFINISHED
from qwq_chat.app.sampling import Limits, Sampling
from qwq_chat.app.session import BUDGET_CLOSE, BUDGET_NOTICE, Session, SessionError
from qwq_chat.app.store import Store, default_db_path, open_store
from qwq_chat.app.tools.registry import build_registry


class ScriptedEngine:
    """Replays scripted outputs token by token (chars) and records what it was asked."""

    name = "scripted"

    def __init__(self, outputs: list[str], piece: int = 2, gate: threading.Event | None = None):
        self.outputs = list(outputs)
        self.piece = piece
        self.gate = gate
        self.requests: list[dict[str, Any]] = []
        self.prompt_opens_reasoning = True
        self._cancel = threading.Event()

    def stream(self, messages, sampling, max_tokens, tools=None, prefill="") -> Iterator[Chunk]:
        self._cancel.clear()
        self.requests.append(
            {
                "messages": messages,
                "prefill": prefill,
                "tools": tools,
                "sampling": sampling,
                "max_tokens": max_tokens,
            }
        )
        out = self.outputs.pop(0)
        if isinstance(out, Exception):
            raise out
        sent = 0
        for i in range(0, len(out), self.piece):
            if self.gate is not None and i == self.piece * 3:
                self.gate.wait(5)
            if self._cancel.is_set():
                yield Chunk(finish_reason="cancelled")
                return
            sent += 1
            yield Chunk(out[i : i + self.piece], tokens=1)
            if sent >= max_tokens:
                yield Chunk(stats=Stats(completion_tokens=sent), finish_reason="length")
                return
        yield Chunk(stats=Stats(prompt_tokens=7, completion_tokens=sent), finish_reason="stop")

    def cancel(self) -> None:
        self._cancel.set()

    def close(self) -> None:
        pass


def collect(events) -> list:
    return list(events)


def test_history_sent_back_holds_answers_only() -> None:
    engine = ScriptedEngine(
        ["secret chain of thought</think>\n\nParis.", "more thoughts</think>\n\nBerlin."]
    )
    session = Session(open_store(), engine, system_prompt="Be brief.")
    events = collect(session.send("Capital of France?"))
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "stop"
    assert (
        "".join(e.text for e in events if isinstance(e, ReasoningDelta))
        == "secret chain of thought"
    )
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == "Paris."
    collect(session.send("And Germany?"))
    sent = engine.requests[1]["messages"]
    assert sent == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And Germany?"},
    ]
    assert "secret" not in repr(sent)
    stored = session.store.messages(session.conversation_id)
    assert [(m.role, m.content, m.reasoning) for m in stored] == [
        ("user", "Capital of France?", ""),
        ("assistant", "Paris.", "secret chain of thought"),
        ("user", "And Germany?", ""),
        ("assistant", "Berlin.", "more thoughts"),
    ]
    assert session.title == "Capital of France?"


def test_tool_loop_runs_calculator_and_continues() -> None:
    call = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2**64"}}\n</tool_call>'
    engine = ScriptedEngine(
        [f"I should compute.</think>\n\n{call}", "Got it.</think>\n\n2^64 = 18446744073709551616."]
    )
    session = Session(open_store(), engine, tools=build_registry(["calculator"]))
    events = collect(session.send("What is 2^64?"))
    calls = [e for e in events if isinstance(e, ToolCall)]
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [(c.name, c.arguments) for c in calls] == [("calculator", {"expression": "2**64"})]
    assert [r.content for r in results] == ["18446744073709551616"]
    assert results[0].id == calls[0].id
    assert engine.requests[0]["tools"][0]["function"]["name"] == "calculator"
    second = engine.requests[1]["messages"]
    assert second[-2]["tool_calls"][0]["function"] == {
        "name": "calculator",
        "arguments": {"expression": "2**64"},
    }
    assert second[-1] == {
        "role": "tool",
        "content": "18446744073709551616",
        "tool_call_id": calls[0].id,
        "name": "calculator",
    }
    roles = [(m.role, m.status) for m in session.store.messages(session.conversation_id)]
    assert roles == [
        ("user", FINISHED),
        ("assistant", FINISHED),
        ("tool", FINISHED),
        ("assistant", FINISHED),
    ]
    assert events[-1] == Done("stop")


def test_tool_loop_is_bounded_and_bad_calls_are_reported() -> None:
    bad = "<tool_call>oops</tool_call>"
    engine = ScriptedEngine([bad, bad, bad, "never used"])
    session = Session(
        Store(":memory:"), engine, tools=build_registry(["calculator"]), max_tool_rounds=2
    )
    events = collect(session.send("loop"))
    results = [e for e in events if isinstance(e, ToolResult)]
    assert len(engine.requests) == 3 and len(results) == 2
    assert all(r.is_error and "invalid tool call" in r.content for r in results)
    assert isinstance(events[-1], Done)


def test_reasoning_budget_closes_the_reasoning_with_a_prefill() -> None:
    engine = ScriptedEngine(["a" * 40, "The answer is 42."], piece=1)
    session = Session(Store(":memory:"), engine, limits=Limits(reasoning_budget=10))
    events = collect(session.send("think a lot"))
    assert len(engine.requests) == 2
    prefill = engine.requests[1]["prefill"]
    assert prefill == "a" * 10 + BUDGET_CLOSE
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert reasoning == "a" * 10 + BUDGET_NOTICE
    answer = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    assert answer == "The answer is 42."
    assert events[-1] == Done("reasoning_budget")
    message = session.messages[-1]
    assert message.content == "The answer is 42." and not message.reasoning_unfinished
    assert engine.requests[1]["max_tokens"] == Limits().max_tokens - 10


def test_max_tokens_guard_and_unfinished_reasoning() -> None:
    engine = ScriptedEngine(["x" * 100], piece=1)
    session = Session(Store(":memory:"), engine, limits=Limits(max_tokens=5))
    events = collect(session.send("go"))
    assert events[-1] == Done("length", reasoning_unfinished=True)
    assert session.messages[-1].reasoning == "xxxxx"
    assert session.messages[-1].reasoning_unfinished
    assert session.messages[-1].finish_reason == "length"


def test_cancel_keeps_what_was_generated() -> None:
    gate = threading.Event()
    engine = ScriptedEngine(["reasoning</think>\n\nlong answer " * 10], gate=gate)
    session = Session(open_store(), engine)
    seen: list = []

    def consume() -> None:
        seen.extend(session.send("hi"))

    worker = threading.Thread(target=consume)
    worker.start()
    while not any(isinstance(e, ReasoningDelta) for e in seen):
        threading.Event().wait(0.01)
    assert session.busy
    session.cancel()
    gate.set()
    worker.join(5)
    assert seen[-1].finish_reason == "cancelled"
    stored = session.store.messages(session.conversation_id)[-1]
    assert stored.status == FINISHED and stored.finish_reason == "cancelled"
    assert stored.reasoning == "reasoning"[: len(stored.reasoning)] and stored.reasoning
    assert not session.busy


def test_abandoned_generator_marks_the_message_stopped() -> None:
    engine = ScriptedEngine(["r</think>\n\n" + "answer " * 20])
    session = Session(open_store(), engine, persist_every_s=0)
    events = session.send("hi")
    for event in events:
        if isinstance(event, AnswerDelta):
            break
    events.close()
    stored = session.store.messages(session.conversation_id)[-1]
    assert stored.status == FINISHED and stored.finish_reason == "cancelled"
    assert stored.content and "answer ".startswith(stored.content)
    assert not session.busy


def test_partial_answer_is_on_disk_while_streaming() -> None:
    engine = ScriptedEngine(["thinking</think>\n\npartial answer that goes on"])
    session = Session(open_store(), engine, persist_every_s=0)
    events = session.send("hi")
    text = ""
    for event in events:
        if isinstance(event, AnswerDelta):
            text += event.text
            if len(text) >= 6:
                break
    reader = Store(default_db_path())  # a second connection, as after a restart
    stored = reader.messages(session.conversation_id)[-1]
    assert stored.status == UNFINISHED
    assert stored.reasoning == "thinking" and stored.content == text
    events.close()


def test_regenerate_and_edit_and_resend() -> None:
    engine = ScriptedEngine(
        ["r</think>first", "r</think>second", "r</think>third", "r</think>fourth"]
    )
    session = Session(open_store(), engine)
    collect(session.send("one"))
    collect(session.send("two"))
    collect(session.regenerate())
    assert [m.content for m in session.messages] == ["one", "first", "two", "third"]
    collect(session.edit_and_resend(0, "ONE"))
    assert [m.content for m in session.messages] == ["ONE", "fourth"]
    assert [m.content for m in session.store.messages(session.conversation_id)] == ["ONE", "fourth"]
    assert engine.requests[-1]["messages"] == [{"role": "user", "content": "ONE"}]
    with pytest.raises(SessionError):
        collect(session.edit_and_resend(1, "not a user message"))


def test_regenerate_needs_a_user_message_and_engine() -> None:
    with pytest.raises(SessionError, match="no user message"):
        collect(Session(Store(":memory:"), ScriptedEngine([])).regenerate())
    with pytest.raises(SessionError, match="not loaded"):
        collect(Session(Store(":memory:"), None).send("hi"))


def test_engine_error_keeps_partial_and_reports() -> None:
    class Failing(ScriptedEngine):
        def stream(self, *args, **kwargs):
            yield Chunk("half a thought")
            raise RuntimeError("GPU fell off")

    session = Session(open_store(), Failing([]))
    events = collect(session.send("hi"))
    assert events[-1].finish_reason == "error" and "GPU fell off" in events[-1].error
    stored = session.store.messages(session.conversation_id)[-1]
    assert stored.reasoning == "half a thought" and stored.finish_reason == "error"
    assert stored.status == FINISHED


def test_per_conversation_settings_are_saved_and_restored() -> None:
    store = open_store()
    session = Session(store, ScriptedEngine(["r</think>ok"]))
    collect(session.send("hi"))
    session.update_settings(
        system_prompt="You are terse.",
        sampling=Sampling(temperature=0.9, top_k=20),
        limits=Limits(max_tokens=300, reasoning_budget=12),
    )
    reopened = Session(store, ScriptedEngine([]), session.conversation_id)
    assert reopened.system_prompt == "You are terse."
    assert reopened.sampling.temperature == 0.9 and reopened.sampling.top_k == 20
    assert reopened.limits == Limits(max_tokens=300, reasoning_budget=12)
    assert [m.content for m in reopened.messages] == ["hi", "ok"]
    with pytest.raises(SessionError):
        Session(store, None, "no-such-id")


def test_store_failure_does_not_break_the_chat() -> None:
    store = open_store()
    session = Session(store, ScriptedEngine(["r</think>still answers"]))
    store.close()  # every write now fails
    events = collect(session.send("hi"))
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == "still answers"
    assert session.store_warning and "could not save" in session.store_warning


def test_settings_saved_before_limits_existed_still_load() -> None:
    """Chats saved by earlier versions kept max_tokens inside "sampling"; they open unchanged."""
    store = open_store()
    session = Session(store, ScriptedEngine(["r</think>ok"]))
    collect(session.send("hi"))
    store.set_settings(
        session.conversation_id,
        {"system_prompt": "", "sampling": {"temperature": 0.4, "max_tokens": 77}},
    )
    reopened = Session(store, None, session.conversation_id)
    assert reopened.sampling.temperature == 0.4 and reopened.limits.max_tokens == 77

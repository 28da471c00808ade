"""A real model calls a tool through llama.cpp: the tool loop end to end, `ask` and the TUI.

The model is the tiny QwQ-shaped checkpoint fine-tuned (tests/app/tool_model.py) to call the
calculator for "What is 12*12?" and answer once the result comes back, converted to GGUF by
convert/. Decoding is greedy (top_k=1) so the memorised round is reproduced.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from qwq_chat.app.ask import run_ask
from qwq_chat.app.config import load_settings
from qwq_chat.app.engines.llama_engine import LlamaEngine
from qwq_chat.app.events import AnswerDelta, Done, ReasoningDelta, ToolCall, ToolResult
from qwq_chat.app.sampling import Limits, Sampling
from qwq_chat.app.session import Session
from qwq_chat.app.store import open_store
from qwq_chat.app.tools.registry import build_registry
from tool_model import QUESTION, cached_tool_gguf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tui"))


@pytest.fixture(scope="session")
def tool_gguf(tiny_checkpoint: Path) -> Path:
    return cached_tool_gguf(tiny_checkpoint)


GREEDY = Sampling(top_k=1, seed=0)


def test_the_model_calls_the_calculator_and_answers_with_its_result(tool_gguf: Path) -> None:
    engine = LlamaEngine(tool_gguf, n_ctx=2048)
    store = open_store()
    session = Session(
        store,
        engine,
        tools=build_registry(["calculator"]),
        sampling=GREEDY,
        limits=Limits(max_tokens=80),
    )
    try:
        events = list(session.send(QUESTION))
    finally:
        engine.close()
    calls = [e for e in events if isinstance(e, ToolCall)]
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [(c.name, c.arguments) for c in calls] == [("calculator", {"expression": "12*12"})]
    assert [(r.name, r.content, r.is_error) for r in results] == [("calculator", "144", False)]
    answer = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert "144" in answer and "<tool_call>" not in answer  # the call is an event, not answer text
    assert "calculator" in reasoning
    assert events[-1] == Done(finish_reason="stop")
    # the store keeps the round: assistant (tool call), tool result, assistant (answer)
    stored = store.messages(session.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert stored[1].tool_calls[0]["name"] == "calculator" and stored[2].content == "144"
    assert "144" in stored[3].content and stored[3].finish_reason == "stop"


def test_ask_shows_the_tool_round_of_a_real_model(tool_gguf: Path) -> None:
    settings = load_settings(model=str(tool_gguf), n_ctx=2048, max_tokens=80)
    settings.sampling = settings.sampling.replace(top_k=1)
    out, err = io.StringIO(), io.StringIO()
    assert run_ask(settings, QUESTION, as_json=True, out=out, err=err) == 0, err.getvalue()
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    types = [e["type"] for e in events]
    assert "tool_call" in types and "tool_result" in types
    assert types.index("tool_call") < types.index("tool_result") < len(types) - 2
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["content"] == "144"
    answer = "".join(e["text"] for e in events if e["type"] == "answer")
    assert "144" in answer and events[-1]["finish_reason"] == "stop"


async def test_the_tui_shows_a_real_models_tool_call(tool_gguf: Path) -> None:
    from qwq_chat.app.tui.app import ChatApp
    from qwq_chat.app.tui.widgets.message import AssistantMessage, ToolCallView
    from tui_helpers import send

    settings = load_settings(model=str(tool_gguf), n_ctx=2048, max_tokens=80)
    settings.sampling = settings.sampling.replace(top_k=1)
    app = ChatApp(settings, lambda: LlamaEngine(tool_gguf, n_ctx=2048), store=open_store())
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, app, QUESTION)
        view = app.chat_screen.chat.query(AssistantMessage).last()
        [tool] = view.query(ToolCallView)
        assert tool.call.name == "calculator" and tool.result is not None
        assert tool.result.content == "144" and not tool.result.is_error
        assert "144" in view.answer_text
    app.engine.close()

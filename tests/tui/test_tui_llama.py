"""The TUI on the real llama.cpp engine (llama-cpp-python) with real GGUF files."""

from __future__ import annotations

from pathlib import Path

from qwq_chat.app.config import load_settings
from qwq_chat.app.engines import create_engine
from qwq_chat.app.store import open_store
from qwq_chat.app.tui.app import ChatApp
from qwq_chat.app.tui.widgets.message import AssistantMessage, ReasoningSection
from tui_helpers import wait_for, wait_idle


def real_app(model: Path, **overrides) -> ChatApp:
    settings = load_settings(model=str(model), n_ctx=512, n_gpu_layers=0, **overrides)
    return ChatApp(settings, lambda: create_engine(settings), store=open_store())


async def test_tiny_qwq_gguf_reasoning_budget_forces_an_answer(tiny_gguf: Path) -> None:
    """QwQ's template opens <think> in the prompt: the random tiny model "thinks" until the
    reasoning budget closes it, then answers; both panes fill from real llama.cpp output."""
    app = real_app(tiny_gguf, reasoning_budget=6, max_tokens=20)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.engine is not None, timeout=120)
        assert app.chat_screen.status.state == "ready"
        app.chat_screen.composer.insert("What is 2+2?")
        await pilot.press("enter")
        await pilot.pause()
        await wait_idle(pilot, app)
        view = app.chat_screen.chat.query(AssistantMessage).last()
        section = view.query_one(ReasoningSection)
        assert section.tokens >= 6 and section.text.strip()
        assert "Considering the limited time" in section.text  # the budget's closing words
        assert view.answer_text.strip()  # generated after the forced </think>
        assert section.collapsed
        status = app.chat_screen.status.text
        assert "tok/s" in status and "ctx " in status and "/512" in status
        assert "GPU layers 0" in status
        stored = app.store.messages(app.chat_screen.session.conversation_id)[-1]
        assert stored.content == view.answer_text
        assert stored.finish_reason in ("reasoning_budget", "length")


async def test_smollm_streams_a_coherent_answer(smollm_gguf: Path) -> None:
    """A real ChatML instruct model: no reasoning section, a readable Markdown answer."""
    # top_k=1: the model's single best token each step, so the answer is the same every run
    app = real_app(smollm_gguf, max_tokens=24, sampling={"top_k": 1, "seed": 0})
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.engine is not None, timeout=120)
        app.chat_screen.composer.insert("What is the capital of France? Answer in one word.")
        await pilot.press("enter")
        await pilot.pause()
        await wait_idle(pilot, app)
        view = app.chat_screen.chat.query(AssistantMessage).last()
        assert not view.query(ReasoningSection)
        assert "paris" in view.answer_text.lower()

"""Helpers for the TUI tests and benchmarks (imported as `tui_helpers`): a ChatApp on a scripted engine and a real SQLite store in tmp dirs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qwq_chat.app.config import load_settings
from qwq_chat.app.events import Stats
from qwq_chat.app.store import open_store
from qwq_chat.app.tui.app import ChatApp
from scripted_engine import ScriptedEngine, qwq_turn

REASONING = "The user says hello. I should greet them back politely and offer help. " * 3
ANSWER = (
    "Hello! Here is a table:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\nprint('hi')\n```\n"
)

FIXED_STATS = Stats(
    prompt_tokens=12,
    completion_tokens=60,
    time_to_first_token_s=0.25,
    tokens_per_second=42.0,
    context_size=16384,
    gpu_layers=0,
)


def make_app(
    turns: list[Any] | None = None,
    *,
    delay_s: float = 0.0,
    engine_factory: Callable[[], Any] | None = None,
    settings_overrides: dict[str, Any] | None = None,
    fixed_stats: bool = True,
) -> tuple[ChatApp, ScriptedEngine]:
    """A ChatApp over a ScriptedEngine; the store is the real SQLite file in the isolated data dir."""
    engine = ScriptedEngine(
        turns or [qwq_turn(REASONING, ANSWER)],
        delay_s=delay_s,
        fixed_stats=FIXED_STATS if fixed_stats else None,
    )
    settings = load_settings(**(settings_overrides or {}))
    app = ChatApp(settings, engine_factory or (lambda: engine), store=open_store())
    return app, engine


async def wait_for(
    pilot: Any, condition: Callable[[], bool], timeout: float = 10.0, poll_s: float = 0.02
) -> None:
    """Let the app run until `condition()` holds; fail the test after `timeout` seconds.

    Benchmarks poll slowly (`poll_s`): each poll is work on the UI thread the real app never does.
    """
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the app")
        # not pilot.pause(delay): that forces a screen refresh each time, work the real app
        # would not do (it would distort the benchmarks that use this helper)
        await asyncio.sleep(poll_s)


async def wait_idle(pilot: Any, app: ChatApp, timeout: float = 10.0, poll_s: float = 0.02) -> None:
    """Until the engine is loaded and no answer is streaming."""
    await wait_for(pilot, lambda: app.engine is not None, timeout, poll_s)
    screen = app.chat_screen
    await wait_for(
        pilot, lambda: not screen.generating and screen.live_view is None, timeout, poll_s
    )
    await pilot.pause()


async def send(pilot: Any, app: ChatApp, text: str) -> None:
    """Type `text` in the prompt box, press Enter and wait for the whole answer."""
    await wait_for(pilot, lambda: app.engine is not None)
    app.chat_screen.composer.focus()
    app.chat_screen.composer.insert(text)
    await pilot.press("enter")
    await pilot.pause()
    await wait_idle(pilot, app)


def screen_text(app: ChatApp) -> str:
    """The screen as plain text, one line per terminal row (for assertions and debugging)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text.rstrip() for strip in strips)


def drawn_strips(widget: Any) -> list[Any]:
    """Every line a (laid out) GrowingText draws, as Textual Strips, scrolled into view or not."""
    return [widget.render_line(y) for y in range(widget.size.height)]


def screen_lines(widget: Any) -> list[str]:
    """Every line a (laid out) GrowingText draws, as plain text."""
    return [strip.text.rstrip() for strip in drawn_strips(widget)]

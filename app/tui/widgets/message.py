"""The widgets of one conversation turn: the user's message and the assistant's reply.

An assistant reply is a column of parts mounted in the order the events arrive: reasoning sections,
tool calls (with their results) and the answer. QwQ may think, call a tool, think again and then
answer, so the parts are not a fixed layout.

Costs stay flat as text grows: reasoning and answer are each one `GrowingText` widget (plain text
and Markdown) that draws only its unfinished last block again on an append. Both receive text
batched per frame by the app, never per token.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Literal

from qwq_chat.app.events import ToolCall, ToolResult
from qwq_chat.app.tui.widgets.growing import GrowingText, MarkdownText
from qwq_chat.app.tui.widgets.tool_entry import ToolCallView
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

ReasoningMode = Literal["collapse", "open", "hidden"]

now = time.monotonic  # the clock of the live "Thinking… 18 s" header (snapshot tests fix it)
CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)


def code_blocks(markdown: str) -> list[str]:
    """The fenced code blocks of a Markdown text, in order (an unclosed last fence counts too)."""
    blocks = CODE_BLOCK.findall(markdown)
    tail = markdown.rsplit("```", 1)
    if markdown.count("```") % 2 == 1 and "\n" in tail[1]:
        blocks.append(tail[1].split("\n", 1)[1])
    return blocks


@dataclass
class Part:
    """A stored piece of an assistant turn: reasoning or answer text (tool events are their own)."""

    kind: Literal["reasoning", "answer"]
    text: str
    tokens: int | None = None
    unfinished: bool = False


class ReasoningSection(Vertical):
    """The model's thinking: a one-line header you can click, and the text below it.

    Live header while streaming ("Thinking… 1,234 tokens, 18 s"); "Thought for 18 s · 1,234 tokens"
    once done; "Thinking stopped unfinished" when the reasoning never reached `</think>`.
    """

    class Toggled(Message):
        def __init__(self, section: ReasoningSection) -> None:
            super().__init__()
            self.section = section

    DEFAULT_CSS = """
    ReasoningSection { height: auto; margin: 0 0 1 0; }
    ReasoningSection > .reasoning-header { height: 1; color: $text-muted; text-style: bold; }
    ReasoningSection > .reasoning-header:hover { background: $boost; }
    ReasoningSection > GrowingText { color: $text-muted; text-style: italic;
        border-left: outer $secondary 50%; padding: 0 1; }
    ReasoningSection.-collapsed > GrowingText { display: none; }
    ReasoningSection.-hidden { display: none; }
    """

    def __init__(
        self,
        text: str = "",
        live: bool = True,
        mode: ReasoningMode = "collapse",
        tokens: int | None = None,
        seconds: float | None = None,
        unfinished: bool = False,
    ) -> None:
        super().__init__()
        self.mode: ReasoningMode = mode
        self.live = live
        self.tokens = tokens if tokens is not None else len(text.split())
        self.seconds = seconds
        self.unfinished = unfinished
        self._started = now()
        self.header = Static("", classes="reasoning-header", markup=False)
        self.body = GrowingText(text, streaming=live)
        if mode == "hidden":
            self.add_class("-hidden")
        elif mode == "collapse" and not live:
            self.add_class("-collapsed")

    def compose(self) -> ComposeResult:
        yield self.header
        yield self.body

    def on_mount(self) -> None:
        self.refresh_header()
        if self.live:
            self._timer = self.set_interval(1.0, self.refresh_header)

    @property
    def text(self) -> str:
        return self.body.text

    @property
    def collapsed(self) -> bool:
        return self.has_class("-collapsed")

    def append(self, text: str, tokens: int) -> None:
        self.body.append(text)
        self.tokens += tokens
        self.refresh_header()

    def finish(self, unfinished: bool = False) -> None:
        """Streaming of this section ended (the answer or a tool call started, or the turn ended)."""
        if not self.live:
            return
        self.live = False
        self.unfinished = unfinished
        self.seconds = now() - self._started
        if hasattr(self, "_timer"):
            self._timer.stop()
        self.body.finish()
        if self.mode == "collapse" and not unfinished:
            self.add_class("-collapsed")
        self.refresh_header()

    def toggle(self) -> None:
        self.toggle_class("-collapsed")
        self.refresh_header()
        self.post_message(self.Toggled(self))

    def refresh_header(self) -> None:
        arrow = "▶" if self.collapsed else "▼"
        tokens = f"{self.tokens:,} tokens"
        if self.live:
            seconds = now() - self._started
            label = f"Thinking… {tokens}, {seconds:.0f} s"
        elif self.unfinished:
            label = f"Thinking stopped unfinished · {tokens}"
        elif self.seconds is not None:
            label = f"Thought for {self.seconds:.0f} s · {tokens}"
        else:
            label = f"Thoughts · {tokens}"
        self.header.update(f"{arrow} {label}")

    def on_click(self, event: events.Click) -> None:
        if event.widget is self.header:
            event.stop()
            self.toggle()


class UserMessage(Static, can_focus=True):
    """What the user sent. Focus it and press `e` to edit and resend."""

    DEFAULT_CSS = """
    UserMessage { height: auto; margin: 1 0 1 8; padding: 0 1; background: $primary 15%;
        border-left: thick $primary; }
    UserMessage:focus { background: $primary 30%; }
    """
    BINDINGS = [("e", "edit", "Edit & resend")]

    class EditRequested(Message):
        def __init__(self, message: UserMessage) -> None:
            super().__init__()
            self.message = message

    def __init__(self, text: str, index: int | None = None) -> None:
        super().__init__(Text(text), markup=False)
        self.text = text
        self.index = index  # position in the conversation's message list (for edit_and_resend)

    def action_edit(self) -> None:
        self.post_message(self.EditRequested(self))


class AssistantMessage(Vertical, can_focus=True):
    """One assistant turn. Focus it: `t` toggles reasoning, `c` copies the answer, `k` the code."""

    DEFAULT_CSS = """
    AssistantMessage { height: auto; margin: 0 8 1 0; padding: 0 1; }
    AssistantMessage:focus { background: $boost; }
    AssistantMessage > MarkdownText { margin: 0; padding: 0; }
    AssistantMessage > .turn-note { color: $warning; height: auto; }
    """
    BINDINGS = [
        ("t", "toggle_reasoning", "Reasoning"),
        ("c", "copy_answer", "Copy answer"),
        ("k", "copy_code", "Copy code"),
    ]

    class CopyRequested(Message):
        def __init__(self, text: str, what: str) -> None:
            super().__init__()
            self.text = text
            self.what = what

    def __init__(self, mode: ReasoningMode = "collapse", live: bool = True) -> None:
        super().__init__()
        self.mode = mode
        self.live = live
        self.answer_text = ""
        self.finish_reason: str | None = None
        self._answer: MarkdownText | None = None
        self._last: Widget | None = None
        self._tool_views: dict[str, ToolCallView] = {}
        self._stored_children: list[Widget] = []

    # -- building from stored history ----------------------------------------------------------
    @classmethod
    def from_parts(
        cls, parts: list[Part], mode: ReasoningMode, unfinished: bool = False
    ) -> AssistantMessage:
        """A finished turn rebuilt from the store: parts in order, as they streamed."""
        message = cls(mode=mode, live=False)
        children: list[Widget] = []
        for part in parts:
            if isinstance(part, ToolCall):
                view = ToolCallView(part)
                message._tool_views[part.id] = view
                children.append(view)
            elif isinstance(part, ToolResult):
                view = message._tool_views.get(part.id) or (
                    list(message._tool_views.values())[-1] if message._tool_views else None
                )
                if view is not None:
                    view.result = part
            elif part.kind == "reasoning":
                children.append(
                    ReasoningSection(
                        part.text,
                        live=False,
                        mode=mode,
                        tokens=part.tokens,
                        unfinished=part.unfinished,
                    )
                )
            else:
                message.answer_text += part.text
                message._answer = MarkdownText(part.text)
                children.append(message._answer)
        if unfinished:
            children.append(Static("(unfinished)", classes="turn-note"))
        message._stored_children = children
        return message

    def compose(self) -> ComposeResult:
        yield from self._stored_children

    # -- streaming -----------------------------------------------------------------------------
    @property
    def reasoning_sections(self) -> list[ReasoningSection]:
        return list(self.query_children(ReasoningSection))

    @property
    def reasoning_tokens(self) -> int:
        return sum(section.tokens for section in self.reasoning_sections)

    @property
    def reasoning_text(self) -> str:
        return "".join(section.text for section in self.reasoning_sections)

    async def add_reasoning(self, text: str, tokens: int) -> None:
        if not isinstance(self._last, ReasoningSection) or not self._last.live:
            self._last = ReasoningSection(mode=self.mode, live=True)
            await self.mount(self._last)
        self._last.append(text, tokens)

    async def add_answer(self, text: str) -> None:
        if self._answer is None:
            self._finish_reasoning()
            self._answer = MarkdownText(streaming=True)
            await self.mount(self._answer)
            self._last = self._answer
        self.answer_text += text
        self._answer.append(text)

    async def add_tool_call(self, call: ToolCall) -> None:
        self._finish_reasoning()
        view = ToolCallView(call)
        self._tool_views[call.id] = view
        self._last = view
        await self.mount(view)

    def add_tool_result(self, result: ToolResult) -> None:
        view = self._tool_views.get(result.id)
        if view is None and self._tool_views:  # ids missing: attach to the latest call
            view = list(self._tool_views.values())[-1]
        if view is not None:
            view.set_result(result)

    async def finish(self, finish_reason: str, reasoning_unfinished: bool = False) -> None:
        """The turn ended; close the sections and say why when it was not a normal stop."""
        self.live = False
        self.finish_reason = finish_reason
        self._finish_reasoning(unfinished=reasoning_unfinished or self._answer is None)
        if self._answer is not None:
            self._answer.finish()
        notes = {
            "cancelled": "(stopped — the text above is kept)",
            "length": "(cut off: maximum tokens reached)",
            "error": "(error — see the notification)",
        }
        if finish_reason in notes:
            await self.mount(Static(notes[finish_reason], classes="turn-note"))

    def _finish_reasoning(self, unfinished: bool = False) -> None:
        for section in self.query_children(ReasoningSection):
            section.finish(unfinished=unfinished)

    # -- actions -------------------------------------------------------------------------------
    def action_toggle_reasoning(self) -> None:
        sections = self.reasoning_sections
        if sections:
            # One key for all sections of the turn: open all if any is closed, else close all.
            want_open = any(s.collapsed for s in sections)
            for section in sections:
                if section.collapsed == want_open:
                    section.toggle()

    def action_copy_answer(self) -> None:
        self.post_message(self.CopyRequested(self.answer_text, "answer"))

    def action_copy_code(self) -> None:
        blocks = code_blocks(self.answer_text)
        if blocks:
            self.post_message(self.CopyRequested(blocks[-1], "code block"))
        else:
            self.notify("This answer has no code block.", severity="warning")

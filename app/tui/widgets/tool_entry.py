"""A tool call inside an assistant turn: one line until opened, then arguments and result in full.

Shown between the reasoning and the answer, as the model made it: the tool's name, its arguments,
the result (red when it is an error) and how long it took. Click it or press Enter on it to open
or close it; a long result would otherwise push the answer off the screen.
"""

from __future__ import annotations

import json

from qwq_chat.app.events import ToolCall, ToolResult
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.widgets import Static

SUMMARY_CHARS = 80


class ToolCallView(Static, can_focus=True):
    """A tool call the model made, and (once it ran) its result; expandable."""

    DEFAULT_CSS = """
    ToolCallView { height: auto; margin: 0 0 1 0; padding: 0 1; border-left: outer $accent; }
    ToolCallView.-error { border-left: outer $error; }
    ToolCallView:focus { background: $boost; }
    """
    BINDINGS = [Binding("enter,space", "toggle", "Open/close", show=False)]

    def __init__(self, call: ToolCall) -> None:
        super().__init__(markup=False)
        self.call = call
        self.result: ToolResult | None = None
        self.expanded = False

    def on_mount(self) -> None:
        if self.result is not None:
            self.set_class(self.result.is_error, "-error")
        self._render_call()

    def set_result(self, result: ToolResult) -> None:
        self.result = result
        self.set_class(result.is_error or result.content.startswith("error: "), "-error")
        self._render_call()

    def action_toggle(self) -> None:
        self.expanded = not self.expanded
        self._render_call()

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.action_toggle()

    @property
    def arguments_text(self) -> str:
        if not self.call.name:
            return self.call.raw
        return json.dumps(self.call.arguments, ensure_ascii=False)

    def _render_call(self) -> None:
        name = self.call.name or "(unparsable tool call)"
        text = Text()
        text.append("▾ " if self.expanded else "▸ ", style="dim")
        text.append("tool call ", style="bold")
        text.append(name, style="bold cyan")
        result = self.result
        error = result is not None and (result.is_error or result.content.startswith("error: "))
        if not self.expanded:
            text.append(" " + _short(self.arguments_text))
            if result is None:
                text.append("\n… running", style="dim")
            else:
                text.append("\n→ ", style="bold")
                text.append(_short(result.content), style="red" if error else "")
        else:
            args = (
                json.dumps(self.call.arguments, ensure_ascii=False, indent=2)
                if self.call.name
                else self.call.raw
            )
            text.append("\narguments:\n", style="dim")
            text.append(args)
            text.append("\nresult:\n", style="dim")
            if result is None:
                text.append("… running", style="dim")
            else:
                text.append(result.content, style="red" if error else "")
        if result is not None and result.duration_s is not None:
            text.append(f"  · {result.duration_s:.2f} s", style="dim")
        self.update(text)


def _short(text: str) -> str:
    """The first line, cut to fit one row."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    more = line != text.strip()
    if len(line) > SUMMARY_CHARS:
        line, more = line[: SUMMARY_CHARS - 1], True
    return line + ("…" if more else "")

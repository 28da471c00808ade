"""`qwq-chat ask`: one question, answered on the terminal without the TUI.

Prints like the DashScope streaming example in the seed: a "Reasoning" heading with the thinking as
it streams, then an "Answer" heading with the answer. `--json` prints one JSON event per line
(`qwq_chat.app.events.to_json`) instead. The exchange is saved to the conversation store like a TUI chat, so
an interrupted `ask` loses nothing either. Stats go to stderr, so stdout stays the model's text.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from qwq_chat.app.events import (
    AnswerDelta,
    Done,
    Event,
    ReasoningDelta,
    Stats,
    ToolCall,
    ToolResult,
    draft_summary,
    to_json,
)

RULE = "=" * 20
REASONING_HEADING = f"{RULE} Reasoning {RULE}"
ANSWER_HEADING = f"{RULE} Answer {RULE}"


class HeadingPrinter:
    """Reasoning, then answer, under headings; tool calls and results inline."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err
        self.section: str | None = None
        self.at_line_start = True
        self.stats: Stats | None = None

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self.at_line_start = text.endswith("\n")

    def _heading(self, section: str, heading: str) -> None:
        if self.section == section:
            return
        if self.section is not None:
            self._write("\n" if self.at_line_start else "\n\n")
        self._write(heading + "\n")
        self.section = section

    def handle(self, event: Event) -> None:
        if isinstance(event, ReasoningDelta):
            self._heading("reasoning", REASONING_HEADING)
            self._write(event.text)
        elif isinstance(event, AnswerDelta):
            self._heading("answer", ANSWER_HEADING)
            self._write(event.text)
        elif isinstance(event, ToolCall):
            args = json.dumps(event.arguments, ensure_ascii=False)
            self._write(
                ("" if self.at_line_start else "\n") + f"[tool call] {event.name}({args})\n"
            )
        elif isinstance(event, ToolResult):
            marker = "tool error" if event.is_error else "tool result"
            self._write(f"[{marker}] {event.content}\n")
        elif isinstance(event, Stats):
            self.stats = event
        elif isinstance(event, Done):
            if not self.at_line_start:
                self._write("\n")
            self.err.write(_stats_line(self.stats, event) + "\n")
            self.err.flush()


class JsonPrinter:
    """One JSON object per event and line: {"type": ..., ...}."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def handle(self, event: Event) -> None:
        self.out.write(json.dumps(to_json(event), ensure_ascii=False) + "\n")
        self.out.flush()


def _stats_line(stats: Stats | None, done: Done) -> str:
    parts = [f"finish: {done.finish_reason}"]
    if stats is not None:
        parts.append(f"{stats.completion_tokens} tokens")
        if stats.tokens_per_second:
            parts.append(f"{stats.tokens_per_second:.1f} tok/s")
        if (draft := draft_summary(stats)) is not None:
            parts.append(draft)
        if stats.time_to_first_token_s is not None:
            parts.append(f"first token {stats.time_to_first_token_s:.2f} s")
        parts.append(f"prompt {stats.prompt_tokens} ({stats.prompt_tokens_processed} processed)")
        if stats.context_size:
            used = stats.prompt_tokens + stats.completion_tokens
            parts.append(f"context {used}/{stats.context_size}")
        if stats.gpu_layers is not None:
            parts.append(f"GPU layers {stats.gpu_layers}")
    line = "--- " + ", ".join(parts)
    if done.error:
        line += f"\nerror: {done.error}"
    return line


def read_prompt(prompt: str | None, stdin: TextIO = sys.stdin) -> str:
    """The prompt argument, or stdin when it is `-` or absent."""
    from qwq_chat.app.errors import UserError

    if prompt is None or prompt == "-":
        if stdin.isatty():
            raise UserError("no prompt: pass it as an argument or pipe it on stdin")
        prompt = stdin.read()
    if not prompt.strip():
        raise UserError("the prompt is empty")
    return prompt


def run_ask(
    settings: Any,
    prompt: str,
    as_json: bool = False,
    save: bool = True,
    out: TextIO | None = None,
    err: TextIO | None = None,
    approve_tools: bool = False,
) -> int:
    """Answer `prompt` with the engine `settings` describe; returns the process exit code."""
    from qwq_chat.app.engines import create_engine
    from qwq_chat.app.logs import setup_logging
    from qwq_chat.app.session import Session
    from qwq_chat.app.store import Store, open_store
    from qwq_chat.app.tools.approvals import headless_approver
    from qwq_chat.app.tools.toolbox import build_toolbox

    setup_logging()
    out = out or sys.stdout
    err = err or sys.stderr
    # MCP servers start while the model loads; the first question waits until they are ready.
    tools = build_toolbox(settings, approver=headless_approver(approve_tools, err))
    store = open_store() if save else Store(":memory:")
    if store.warning:
        err.write(f"warning: {store.warning}\n")
    try:
        engine = create_engine(settings, progress=err.isatty())
    except BaseException:
        tools.close()
        raise
    if engine.load_warning:
        err.write(f"warning: {engine.load_warning}\n")
    if not as_json:
        err.write(f"--- {engine.description}\n")
    printer = JsonPrinter(out) if as_json else HeadingPrinter(out, err)
    if tools.mcp is not None:
        tools.mcp.wait_ready()
        for name, state in tools.mcp.servers.items():
            if state.error:
                err.write(f"warning: MCP server {name}: {state.error}\n")
    session = Session.from_settings(settings, store, engine, tools=tools)
    events = session.send(prompt)
    done: Done | None = None
    code: int | None = None
    try:
        for event in events:
            printer.handle(event)
            if isinstance(event, Done):
                done = event
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:  # `qwq-chat ask ... | head`: the reader left; stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        code = 0
    finally:
        if code is not None:
            session.cancel()
        events.close()  # an interrupted answer is marked stopped in the store, never lost
        engine.close()
        tools.close()
        store.close()
    if code is not None:
        return code
    return 1 if done is None or done.finish_reason == "error" else 0

"""What flows from an engine back to the UI: one small dataclass per kind of event.

The splitter turns raw text deltas into these; the session adds tool events; the TUI, `ask` and
the store consume them. `to_json()` gives the `qwq-chat ask --json` line for each.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's thinking (inside <think>...</think> or remote reasoning_content)."""

    text: str
    type: str = field(default="reasoning", init=False)


@dataclass(frozen=True, slots=True)
class AnswerDelta:
    """A piece of the final answer (after </think>)."""

    text: str
    type: str = field(default="answer", init=False)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asked for a tool: parsed from <tool_call>{"name": ..., "arguments": ...}</tool_call>."""

    name: str
    arguments: dict[str, Any]
    id: str = ""
    raw: str = ""
    type: str = field(default="tool_call", init=False)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What running a tool gave back; fed to the model as <tool_response>."""

    name: str
    content: str
    id: str = ""
    is_error: bool = False
    type: str = field(default="tool_result", init=False)


@dataclass(frozen=True, slots=True)
class Stats:
    """Usage and speed for one generation."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    prompt_tokens_processed: int = 0  # after KV-cache reuse; <= prompt_tokens
    time_to_first_token_s: float | None = None
    tokens_per_second: float | None = None
    context_size: int | None = None
    gpu_layers: int | None = None
    type: str = field(default="stats", init=False)


@dataclass(frozen=True, slots=True)
class Done:
    """End of one assistant turn. `finish_reason`: stop, length, cancelled, error, reasoning_budget.

    `reasoning_unfinished`: the last message's reasoning never closed (cut by max tokens or a stop).
    """

    finish_reason: str = "stop"
    error: str | None = None
    reasoning_unfinished: bool = False
    type: str = field(default="done", init=False)


Event = ReasoningDelta | AnswerDelta | ToolCall | ToolResult | Stats | Done


def to_json(event: Event) -> dict[str, Any]:
    """The `--json` line for an event: {"type": ..., ...fields}."""
    data = asdict(event)
    data["type"] = event.type
    return data

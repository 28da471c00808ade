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
    duration_s: float | None = None  # how long the tool ran (shown in the TUI's tool entry)
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
    # Speculative decoding (docs/models-and-gpus.md): share of drafted tokens the main model kept,
    # and tokens gained per main-model pass (1.0 without a draft); None when it was off.
    draft_acceptance_rate: float | None = None
    tokens_per_pass: float | None = None
    type: str = field(default="stats", init=False)


def draft_summary(stats: Stats) -> str | None:
    """The status line and ask summary for speculative decoding ("draft 72% · 2.4 tok/pass")."""
    if stats.tokens_per_pass is None:
        return None
    rate = stats.draft_acceptance_rate
    kept = f"{rate:.0%}" if rate is not None else "no guesses"
    return f"draft {kept} · {stats.tokens_per_pass:.1f} tok/pass"


@dataclass(frozen=True, slots=True)
class Done:
    """End of one assistant turn. `finish_reason`: stop, length, cancelled, error, reasoning_budget.

    `reasoning_unfinished`: the last message's reasoning never closed (cut by max tokens or a stop).
    `detail`: why a reasoning control stepped in (the loop guard's finding), for the status line.
    finish_reason "reasoning_loop": the loop guard closed or stopped the reasoning.
    """

    finish_reason: str = "stop"
    error: str | None = None
    reasoning_unfinished: bool = False
    detail: str | None = None
    type: str = field(default="done", init=False)


Event = ReasoningDelta | AnswerDelta | ToolCall | ToolResult | Stats | Done


def to_json(event: Event) -> dict[str, Any]:
    """The `--json` line for an event: {"type": ..., ...fields}."""
    data = asdict(event)
    data["type"] = event.type
    if isinstance(event, Done) and event.detail is None:
        del data["detail"]  # only there when a reasoning control stepped in
    return data

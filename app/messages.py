"""One chat message as the app keeps it, and the rule for what goes back to the model.

The app stores reasoning APART from the answer (`reasoning` vs `content`). What the model sees again
in later turns is the answer only, as QwQ's model card asks (its template strips reasoning too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FINISHED = "finished"
UNFINISHED = "unfinished"  # still streaming, or the app died mid-answer


@dataclass
class Message:
    """A user, assistant, system or tool message. Assistant tool calls: [{"id", "name", "arguments"}]."""

    role: str
    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_call_id: str = ""
    name: str = ""  # tool name, for role "tool"
    status: str = FINISHED
    finish_reason: str | None = None  # stop, length, cancelled, error, reasoning_budget
    reasoning_unfinished: bool = False  # the reasoning never reached </think>
    stats: dict[str, Any] | None = None
    id: int | None = None
    position: int = 0
    created_at: float = 0.0

    @property
    def unfinished(self) -> bool:
        return self.status == UNFINISHED


def history_for_model(messages: list[Message], system_prompt: str = "") -> list[dict[str, Any]]:
    """OpenAI-style message list sent back to the model: answers only, never reasoning.

    An assistant message that produced neither an answer nor tool calls (stopped while thinking) is
    left out; tool calls keep their arguments as a dict (the chat template `tojson`s them; the
    OpenAI engine encodes them as a string).
    """
    out: list[dict[str, Any]] = []
    if system_prompt:
        out.append({"role": "system", "content": system_prompt})
    for msg in messages:
        if msg.role == "assistant":
            if not msg.content and not msg.tool_calls:
                continue
            item: dict[str, Any] = {"role": "assistant", "content": msg.content}
            if msg.tool_calls:
                item["tool_calls"] = [
                    {
                        "id": call.get("id", ""),
                        "type": "function",
                        "function": {"name": call["name"], "arguments": call.get("arguments", {})},
                    }
                    for call in msg.tool_calls
                ]
            out.append(item)
        elif msg.role == "tool":
            out.append(
                {
                    "role": "tool",
                    "content": msg.content,
                    "tool_call_id": msg.tool_call_id,
                    "name": msg.name,
                }
            )
        else:
            out.append({"role": msg.role, "content": msg.content})
    return out

"""The protocol every engine speaks.

An engine turns a conversation into a stream of `Chunk`s. Local engines (llama.cpp, transformers)
render the prompt themselves and produce raw text in which reasoning and answer are separated by
`</think>`; the splitter sorts that out. Remote engines may also flag text as reasoning
(`delta.reasoning_content`). Engines run in a worker thread and must honour `cancel()` promptly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from app.events import Stats


@dataclass(frozen=True, slots=True)
class Sampling:
    """QwQ-32B's model-card sampling defaults. Never greedy: it loops."""

    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    max_tokens: int = 32768
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    """A text delta from the engine. `reasoning=True` only when the server separated it for us."""

    text: str = ""
    reasoning: bool = False
    stats: Stats | None = None  # set on the last chunk
    finish_reason: str | None = None  # set on the last chunk: stop, length, cancelled


class Engine(Protocol):
    """What the session needs from a backend."""

    name: str
    # Set by `stream()` before its first chunk: True when the rendered prompt already opened the
    # reasoning (QwQ's template ends with "<think>\n"), so the output starts inside it.
    prompt_opens_reasoning: bool

    def stream(
        self,
        messages: list[dict[str, Any]],
        sampling: Sampling,
        tools: list[dict[str, Any]] | None = None,
        prefill: str = "",
    ) -> Iterator[Chunk]:
        """Generate the assistant's next turn for an OpenAI-style message list.

        `prefill` is text appended after the generation prompt (used to continue a turn after a
        tool result, or to force `</think>` when the reasoning budget runs out).
        """
        ...

    def cancel(self) -> None:
        """Ask a running `stream` to stop soon; it then ends with finish_reason "cancelled"."""
        ...

    def close(self) -> None:
        """Free the model / connection."""
        ...

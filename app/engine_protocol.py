"""The protocol every engine speaks, and what it yields.

It lives in the core (not in engines/) because the session drives engines through it without
knowing which one runs: llama.cpp, an OpenAI-compatible server or transformers.

An engine turns a conversation into a stream of `Chunk`s. Local engines render the prompt
themselves and produce raw text in which reasoning and answer are separated by `</think>`; the
splitter sorts that out. Remote engines may also flag text as reasoning (`reasoning_content`) and
hand over tool calls the server already parsed, with the server's ids. Every chunk says how many
tokens it stands for, so budgets and limits count tokens, not chunks. Engines run in a worker thread
and must honour `cancel()` promptly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from qwq_chat.app.errors import UserError
from qwq_chat.app.events import Stats, ToolCall
from qwq_chat.app.sampling import Sampling


@dataclass(frozen=True, slots=True)
class Chunk:
    """A delta from the engine. `reasoning=True` only when the server separated it for us."""

    text: str = ""
    reasoning: bool = False
    tokens: int = 0  # generated tokens this chunk stands for (a token may carry no text yet)
    tool_calls: tuple[ToolCall, ...] = ()  # calls a server parsed itself (their ids kept)
    stats: Stats | None = None  # set on the last chunk
    finish_reason: str | None = None  # set on the last chunk: stop, length, cancelled


class Engine(Protocol):
    """What the session needs from a backend."""

    name: str
    # Set by `stream()` before its first chunk: True when the rendered prompt already opened the
    # reasoning (QwQ's template ends with "<think>\n"), so the output starts inside it; None when
    # the engine cannot know (a remote server's template): the splitter then decides from the text.
    prompt_opens_reasoning: bool | None
    description: str  # one line for the user: which model, where it runs, which template
    placement: str  # short, for the status line: "GPU: all 64 layers", "CPU only", "remote"
    load_warning: str | None  # said once after loading (e.g. a GPU the build cannot use)

    def stream(
        self,
        messages: list[dict[str, Any]],
        sampling: Sampling,
        max_tokens: int,
        tools: list[dict[str, Any]] | None = None,
        prefill: str = "",
        grammar: Any = None,
        raw_prompt: str | None = None,
    ) -> Iterator[Chunk]:
        """Generate the assistant's next turn for an OpenAI-style message list.

        At most `max_tokens` new tokens. `prefill` is text appended after the generation prompt
        (used to continue a turn, or to force `</think>` when the reasoning budget runs out).
        `grammar` (a `llama_cpp.LlamaGrammar`) constrains every generated token; the session
        passes it only once the reasoning is closed. `raw_prompt` replaces the rendered chat
        (`serve`'s /v1/completions). Engines that cannot honour them raise a `UserError`.
        """
        ...

    def cancel(self) -> None:
        """Ask a running `stream` to stop soon; it then ends with finish_reason "cancelled"."""
        ...

    def close(self) -> None:
        """Free the model / connection."""
        ...


def unsupported_options(engine: str, grammar: Any, raw_prompt: str | None) -> None:
    """For engines without grammars or raw prompts: a clear error instead of ignoring them."""
    if grammar is not None:
        raise UserError(f"the {engine} backend cannot constrain output with a grammar; use llama")
    if raw_prompt is not None:
        raise UserError(f"the {engine} backend cannot complete raw prompts; use llama")


class Toolbox(Protocol):
    """The tools a session may run (built-in and MCP tools alike); see qwq_chat.app.tools."""

    def schemas(self) -> list[dict[str, Any]]: ...

    def run(self, call: ToolCall) -> Any: ...  # a ToolResult event

    def __len__(self) -> int: ...

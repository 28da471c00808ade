"""What a tool is: a name, a JSON-schema for its arguments, and a function that returns text.

The schema goes into the chat template's `# Tools` block; the session runs `call()` when the model
emits `<tool_call>` and feeds the text back as `<tool_response>`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class ToolError(Exception):
    """The tool ran but the call was bad (wrong arguments, failed computation); shown to the model."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)  # JSON schema of the arguments
    run: Callable[[dict[str, Any]], str] | None = None

    def schema(self) -> dict[str, Any]:
        """OpenAI-style function schema, as the chat template and remote APIs expect."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def call(self, arguments: dict[str, Any]) -> str:
        if self.run is None:
            raise ToolError(f"tool {self.name!r} has no implementation")
        return self.run(arguments)

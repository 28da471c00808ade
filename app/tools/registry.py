"""The set of tools offered to the model, and how a `ToolCall` is turned into a `ToolResult`.

Extensible: `BUILTIN_TOOLS` maps a name (as used in the config's `tools = [...]`) to a factory.
Other parts add their tool with one line there (e.g. the sandboxed `python` tool).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from qwq_chat.app.errors import UserError
from qwq_chat.app.events import ToolCall, ToolResult
from qwq_chat.app.tools.base import Tool, ToolError


def _calculator() -> Tool:
    from qwq_chat.app.tools.calculator import calculator_tool

    return calculator_tool()


def _python() -> Tool:
    from qwq_chat.app.tools.python_tool import python_tool

    return python_tool()


BUILTIN_TOOLS: dict[str, Callable[[], Tool]] = {
    "calculator": _calculator,
    "python": _python,
}


class ToolRegistry:
    """Named tools; `schemas()` for the chat template, `run()` for the session's tool loop."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        return [tool.schema() for tool in self._tools.values()]

    def run(self, call: ToolCall) -> ToolResult:
        """Run one call; any failure becomes an error result the model can read and recover from."""
        if not call.name:
            return ToolResult(
                name="",
                content=f"invalid tool call (expected JSON with name and arguments): {call.raw}",
                id=call.id,
                is_error=True,
            )
        tool = self._tools.get(call.name)
        if tool is None:
            return ToolResult(
                name=call.name,
                content=f"unknown tool {call.name!r}; available: {', '.join(self._tools)}",
                id=call.id,
                is_error=True,
            )
        try:
            return ToolResult(name=call.name, content=tool.call(call.arguments), id=call.id)
        except ToolError as exc:
            return ToolResult(name=call.name, content=f"error: {exc}", id=call.id, is_error=True)
        except Exception as exc:  # a tool bug must not kill the chat
            return ToolResult(
                name=call.name, content=f"error: {type(exc).__name__}: {exc}", id=call.id,
                is_error=True,
            )  # fmt: skip


def build_registry(names: Iterable[str]) -> ToolRegistry:
    """The registry for the config's `tools` list; an unknown name is a UserError."""
    registry = ToolRegistry()
    for name in names:
        factory = BUILTIN_TOOLS.get(name)
        if factory is None:
            raise UserError(
                f"unknown tool {name!r} in settings 'tools'; available: {', '.join(BUILTIN_TOOLS)}"
            )
        registry.register(factory())
    return registry

"""The tools a chat runs: the built-in ones and those of MCP servers, behind approvals.

`Toolbox` is what a `Session` gets (it satisfies qwq_chat.app.engine_protocol.Toolbox): one list
of schemas for the chat template and one `run()` for the tool loop. MCP tools keep their server's
name unless two tools would share a name; then the later one (in configuration order, built-in
tools first) is offered as `SERVER__TOOL`. Before an MCP call (and a built-in one when the config
says so) the approver decides, unless the tool is in `[mcp] always_allow`. `for_chat()` gives the
view one chat uses: the same tools minus the ones switched off for it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from qwq_chat.app.errors import UserError
from qwq_chat.app.events import ToolCall, ToolResult
from qwq_chat.app.tools.approvals import (
    DENIED,
    ApprovalRequest,
    ApprovalRules,
    Approver,
    deny_all,
)
from qwq_chat.app.tools.base import ToolError
from qwq_chat.app.tools.mcp_client import READY, McpManager
from qwq_chat.app.tools.registry import ToolRegistry, build_registry

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class ToolEntry:
    """One tool as offered to the model. `server` is None for a built-in tool."""

    name: str
    tool: str
    server: str | None
    description: str
    parameters: dict[str, Any]

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters or {"type": "object", "properties": {}},
            },
        }


class Toolbox:
    """Built-in tools plus MCP tools, with approvals; safe to use from worker threads."""

    def __init__(
        self,
        builtin: ToolRegistry,
        mcp: McpManager | None = None,
        rules: ApprovalRules | None = None,
        approver: Approver | None = None,
    ) -> None:
        self.builtin = builtin
        self.mcp = mcp
        self.rules = rules or ApprovalRules()
        self.approver: Approver = approver or deny_all
        self._on_notice: Callable[[str], None] | None = None
        self._held: list[str] = []  # notices from before anyone listened (a fast start failure)
        if mcp is not None:
            mcp.on_failure = lambda server, why: self._notice(f"MCP server {server}: {why}")
            for name, state in mcp.servers.items():
                if state.error:
                    self._held.append(f"MCP server {name}: {state.error}")

    @property
    def on_notice(self) -> Callable[[str], None] | None:
        """Called with one line for the user when a tool or server fails (e.g. the TUI's notify)."""
        return self._on_notice

    @on_notice.setter
    def on_notice(self, listener: Callable[[str], None] | None) -> None:
        self._on_notice = listener
        held, self._held = self._held, []
        for text in held if listener is not None else []:
            listener(text)

    # -- what is offered -------------------------------------------------------------------------
    def entries(self) -> list[ToolEntry]:
        """Every tool available now (MCP servers that are ready), names made unique."""
        entries: list[ToolEntry] = []
        taken: set[str] = set()
        for name in self.builtin.names:
            tool = self.builtin.get(name)
            assert tool is not None
            entries.append(ToolEntry(name, name, None, tool.description, tool.parameters))
            taken.add(name)
        for remote in self.mcp.tools() if self.mcp else []:
            name = _UNSAFE.sub("_", remote.name) or "tool"
            if name in taken:
                name = f"{_UNSAFE.sub('_', remote.server)}__{name}"
            suffix = 2
            while name in taken:
                name, suffix = f"{name}_{suffix}", suffix + 1
            taken.add(name)
            entries.append(
                ToolEntry(name, remote.name, remote.server, remote.description, remote.input_schema)
            )
        return entries

    def schemas(self, disabled: Iterable[str] = ()) -> list[dict[str, Any]]:
        off = set(disabled)
        return [e.schema() for e in self.entries() if e.name not in off]

    def __len__(self) -> int:
        return len(self.entries())

    def status(self) -> list[dict[str, Any]]:
        """For `tools list` and the TUI panel: every tool and every server, with its status."""
        rows: list[dict[str, Any]] = [
            {"name": e.name, "server": e.server or "built-in", "status": "ready",
             "description": e.description}
            for e in self.entries()
        ]  # fmt: skip
        for name, state in (self.mcp.servers if self.mcp else {}).items():
            if state.status != READY:
                rows.append(
                    {"name": "", "server": name, "status": state.status, "description": state.error}
                )
        return rows

    def for_chat(self, disabled: Callable[[], Iterable[str]]) -> ChatTools:
        return ChatTools(self, disabled)

    # -- running ---------------------------------------------------------------------------------
    def run(self, call: ToolCall, disabled: Iterable[str] = ()) -> ToolResult:
        """Approve, run and time one call; every failure is an error result the model reads."""
        start = time.monotonic()
        result = self._run(call, set(disabled))
        return ToolResult(
            result.name, result.content, result.id, result.is_error, time.monotonic() - start
        )

    def _run(self, call: ToolCall, disabled: set[str]) -> ToolResult:
        if not call.name:
            return self.builtin.run(call)  # unparsable: the registry says what was expected
        entries = self.entries()
        entry = next((e for e in entries if e.name == call.name), None)
        if entry is None:
            names = ", ".join(e.name for e in entries if e.name not in disabled)
            gone = self._stopped_server_of(call.name)
            if gone:
                return _error(
                    call, f"tool {call.name!r} is unavailable: {gone}; available: {names}"
                )
            return _error(call, f"unknown tool {call.name!r}; available: {names}")
        if call.name in disabled:
            return _error(call, f"tool {call.name!r} is switched off for this chat")
        request = ApprovalRequest(entry.name, entry.tool, entry.server, dict(call.arguments))
        if self.rules.needs_approval(request):
            try:
                decision = self.approver(request)
            except Exception as exc:  # an approver that fails must not run the tool
                decision = "deny"
                self._notice(f"could not ask about {request.key}: {exc}")
            if decision == "deny":
                return _error(call, DENIED)
            if decision == "always":
                warning = self.rules.remember(request)
                if warning:
                    self._notice(warning)
        if entry.server is None:
            return self.builtin.run(call)
        assert self.mcp is not None
        try:
            content = self.mcp.call(entry.server, entry.tool, dict(call.arguments))
        except ToolError as exc:
            self._notice(f"{entry.name}: {exc}")
            return _error(call, str(exc))
        except Exception as exc:  # a client bug must not end the chat either
            self._notice(f"{entry.name}: {type(exc).__name__}: {exc}")
            return _error(call, f"{type(exc).__name__}: {exc}")
        return ToolResult(name=call.name, content=content, id=call.id)

    def _stopped_server_of(self, name: str) -> str | None:
        """Why a tool that a server offered before it failed is gone (None: never offered)."""
        for server, state in (self.mcp.servers if self.mcp else {}).items():
            if state.status != READY and any(
                name in (t.name, f"{_UNSAFE.sub('_', server)}__{t.name}") for t in state.tools
            ):
                return f"MCP server {server!r} is not running ({state.error or state.status})"
        return None

    def _notice(self, text: str) -> None:
        listener = self._on_notice
        if listener is None:
            self._held.append(text)
        else:
            listener(text)

    def close(self) -> None:
        if self.mcp is not None:
            self.mcp.close()


class ChatTools:
    """One chat's view of a toolbox: the tools switched off for it are neither offered nor run."""

    def __init__(self, toolbox: Toolbox, disabled: Callable[[], Iterable[str]]) -> None:
        self.toolbox = toolbox
        self.disabled = disabled

    def schemas(self) -> list[dict[str, Any]]:
        return self.toolbox.schemas(self.disabled())

    def run(self, call: ToolCall) -> ToolResult:
        return self.toolbox.run(call, self.disabled())

    def __len__(self) -> int:
        return len(self.schemas())


def _error(call: ToolCall, text: str) -> ToolResult:
    return ToolResult(name=call.name, content=f"error: {text}", id=call.id, is_error=True)


def build_toolbox(settings: Any, approver: Approver | None = None, start: bool = True) -> Toolbox:
    """The toolbox `settings` describe; MCP servers start in the background when `start`.

    A bad `--mcp-config` file is a UserError here; a server whose entry cannot be resolved (an
    unset `${VAR}`, no command or url) is listed as failed and the others still start.
    """
    from qwq_chat.app import paths
    from qwq_chat.app.tools.mcp_config import McpConfigError, configured_servers, resolve

    builtin = build_registry(settings.tools)
    servers = configured_servers(settings)
    manager = None
    if servers:
        specs, failed = [], {}
        for name, server in servers.items():
            try:
                specs.append(resolve(name, server))
            except McpConfigError as exc:
                failed[name] = str(exc)
        mcp = settings.mcp
        manager = McpManager(
            specs,
            timeout_s=mcp.timeout_s,
            startup_timeout_s=mcp.startup_timeout_s,
            max_result_chars=mcp.max_result_chars,
            log_dir=paths.log_dir(),
            failed=failed,
        )
    toolbox = Toolbox(builtin, manager, ApprovalRules.from_settings(settings), approver)
    if manager is not None and start:
        manager.start()  # after the toolbox listens for failures
    return toolbox


def serve_toolbox(settings: Any) -> Toolbox:
    """For `serve --mcp-tools`: only the tools `[mcp] always_allow` names may run (no one to ask).

    Raises UserError when no approval rules are set, so MCP tools are never offered unguarded.
    """
    if not settings.mcp.always_allow:
        raise UserError(
            "--mcp-tools needs approval rules: list the tools the server may run as "
            '[mcp] always_allow = ["SERVER/TOOL", ...] in the config (see docs/tools.md)'
        )
    return build_toolbox(settings, approver=deny_all)

"""Connections to MCP servers on the official `mcp` SDK, kept on one background asyncio loop.

Why a thread with its own loop: the chat runs tools from a plain worker thread (the session's
generator), and the SDK is async. Each server lives in one task on that loop, which enters the
transport (stdio or Streamable HTTP) and the `ClientSession` and stays inside them until
`close()`, so the SDK's cancel scopes are entered and left by the same task. Starting is
non-blocking: the app is usable at once and a server's tools appear once it has listed them.

Every failure is a `ToolError` with a message for the model and the user: a server that will not
start (with the end of its stderr), one that crashes mid-call, a call that takes longer than the
timeout, a result over the size limit. Nothing here can hang the chat longer than the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwq_chat.app.tools.base import ToolError
from qwq_chat.app.tools.mcp_config import McpConfigError, ServerSpec

log = logging.getLogger(__name__)

STARTING, READY, FAILED, STOPPED = "starting", "ready", "failed", "stopped"
STDERR_TAIL_CHARS = 400
CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class RemoteTool:
    """A tool as a server listed it."""

    server: str
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass
class ServerState:
    """What the user sees about one server: `status` and, when it failed, why."""

    spec: ServerSpec
    status: str = STARTING
    error: str = ""
    tools: list[RemoteTool] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)  # set once READY or FAILED
    session: Any = None
    stop: asyncio.Event | None = None
    log_path: Path | None = None


class McpManager:
    """Starts servers in the background and calls their tools from any thread."""

    def __init__(
        self,
        specs: list[ServerSpec],
        *,
        timeout_s: float = 60.0,
        startup_timeout_s: float = 30.0,
        max_result_chars: int = 100_000,
        log_dir: Path | None = None,
        failed: dict[str, str] | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.max_result_chars = max_result_chars
        self.log_dir = log_dir
        self.servers: dict[str, ServerState] = {s.name: ServerState(s) for s in specs}
        for name, error in (failed or {}).items():  # entries that could not even be resolved
            state = ServerState(ServerSpec(name), status=FAILED, error=error)
            state.ready.set()
            self.servers[name] = state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: list[Future[None]] = []
        self.on_failure: Callable[[str, str], None] | None = None  # (server, why): not at a call

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start every server in the background; returns at once."""
        if self._thread is not None or not any(s.status == STARTING for s in self.servers.values()):
            return
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp", daemon=True)
        self._thread.start()
        for state in self.servers.values():
            if state.status == STARTING:
                self._tasks.append(asyncio.run_coroutine_threadsafe(self._run(state), self._loop))

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until every server is ready or failed (at most the startup timeout)."""
        deadline = time.monotonic() + (timeout_s or self.startup_timeout_s) + 1
        for state in self.servers.values():
            state.ready.wait(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Stop the servers (stdio ones are terminated) and the loop; bounded in time."""
        loop = self._loop
        if loop is None:
            return
        for state in self.servers.values():
            if state.stop is not None:
                loop.call_soon_threadsafe(state.stop.set)
        deadline = time.monotonic() + CLOSE_TIMEOUT_S  # for all of them together
        for task in self._tasks:
            with contextlib.suppress(Exception):
                task.result(max(0.0, deadline - time.monotonic()))
        for task in self._tasks:
            task.cancel()
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(CLOSE_TIMEOUT_S)
        self._loop = self._thread = None

    # -- reading ---------------------------------------------------------------------------------
    def tools(self) -> list[RemoteTool]:
        """The tools of the servers that are ready, in configuration order."""
        return [t for s in self.servers.values() if s.status == READY for t in s.tools]

    # -- calling -----------------------------------------------------------------------------------
    def call(self, server: str, tool: str, arguments: dict[str, Any]) -> str:
        """Run `tool` on `server`; its text, or ToolError with a message for the model."""
        state = self.servers.get(server)
        if state is None:
            raise ToolError(f"no MCP server named {server!r}")
        if state.status == STARTING:
            state.ready.wait(self.startup_timeout_s)
        if state.status != READY or state.session is None or self._loop is None:
            raise ToolError(f"MCP server {server!r} is not running: {state.error or state.status}")
        timeout = state.spec.timeout_s or self.timeout_s
        future = asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(state.session.call_tool(tool, arguments), timeout), self._loop
        )
        try:
            result = future.result(timeout + 5)
        except (TimeoutError, FutureTimeout):
            future.cancel()
            raise ToolError(
                f"{tool} on MCP server {server!r} did not answer within {timeout:g} s "
                "(the timeout is [mcp] timeout_s)"
            ) from None
        except Exception as exc:
            if not self._alive(state):
                self._fail(state, f"it stopped during a call ({_describe(exc)})", notify=False)
                raise ToolError(
                    f"MCP server {server!r} crashed while running {tool}: {state.error}"
                ) from None
            raise ToolError(f"{tool} on MCP server {server!r} failed: {_describe(exc)}") from None
        text = result_text(result)
        if len(text) > self.max_result_chars:
            raise ToolError(
                f"{tool} on MCP server {server!r} returned {len(text):,} characters, more than "
                f"the limit of {self.max_result_chars:,} ([mcp] max_result_chars); it begins: "
                + text[:200]
            )
        if getattr(result, "is_error", False):
            raise ToolError(text or f"{tool} reported an error without a message")
        return text

    # -- the background side ---------------------------------------------------------------------
    async def _run(self, state: ServerState) -> None:
        """Connect, list the tools, then hold the connection open until `close()`."""
        state.stop = asyncio.Event()
        try:
            async with contextlib.AsyncExitStack() as stack:
                try:  # asyncio.timeout, not wait_for: the SDK's task groups need this task
                    async with asyncio.timeout(self.startup_timeout_s):
                        session = await self._connect(state, stack)
                except TimeoutError:
                    self._fail(state, f"not ready after {self.startup_timeout_s:g} s")
                    return
                state.session = session
                state.status = READY
                state.ready.set()
                await state.stop.wait()
                state.session = None
        except BaseException as exc:  # anything the transport raises: the server is unusable
            if state.status != READY:
                self._fail(state, f"could not start: {_describe(exc)}{self._stderr_tail(state)}")
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        finally:
            if state.status == READY:
                state.status = STOPPED
            state.ready.set()

    async def _connect(self, state: ServerState, stack: contextlib.AsyncExitStack) -> Any:
        from mcp import ClientSession

        spec = state.spec
        if spec.command:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            params = StdioServerParameters(
                command=spec.command, args=list(spec.args), env=spec.env or None, cwd=spec.cwd
            )
            errlog = stack.enter_context(self._open_log(state))
            streams = await stack.enter_async_context(stdio_client(params, errlog=errlog))
        else:
            from mcp.client.streamable_http import streamable_http_client
            from mcp.shared._httpx_utils import create_mcp_http_client

            client = await stack.enter_async_context(
                create_mcp_http_client(headers=spec.headers or None)
            )
            streams = await stack.enter_async_context(
                streamable_http_client(str(spec.url), http_client=client)
            )
        read, write = streams[0], streams[1]
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        listed = await session.list_tools()
        state.tools = [
            RemoteTool(spec.name, t.name, t.description or "", _schema_order(t.input_schema))
            for t in listed.tools
        ]
        return session

    def _open_log(self, state: ServerState) -> Any:
        """The server's stderr goes to a file (never onto the TUI's screen)."""
        import os
        import tempfile

        folder = self.log_dir or Path(tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in state.spec.name)
        state.log_path = folder / f"mcp-{safe}.log"
        return open(state.log_path, "w", encoding="utf-8", opener=_private(os))  # noqa: SIM115

    def _stderr_tail(self, state: ServerState) -> str:
        if state.log_path is None:
            return ""
        try:
            tail = state.log_path.read_text(encoding="utf-8", errors="replace")[-STDERR_TAIL_CHARS:]
        except OSError:
            return ""
        tail = " ".join(tail.split())
        return f"; its stderr ends: {tail}" if tail else ""

    def _alive(self, state: ServerState) -> bool:
        """False once the transport is gone (a stdio server that exited, an HTTP server down)."""
        if self._loop is None or state.session is None:
            return False
        future = asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(state.session.send_ping(), 5), self._loop
        )
        try:
            future.result(7)
            return True
        except Exception:
            future.cancel()
            return False

    def _fail(self, state: ServerState, error: str, notify: bool = True) -> None:
        state.status, state.error = FAILED, error
        state.ready.set()
        log.warning("MCP server %s: %s", state.spec.name, error)
        if notify and self.on_failure is not None:
            self.on_failure(state.spec.name, error)


def _schema_order(schema: dict[str, Any] | None) -> dict[str, Any]:
    """The usual key order (type, properties, required, ...): the SDK's models reorder them, and
    the schema is rendered into the prompt as is, so the same tool reads the same everywhere."""
    schema = dict(schema or {})
    first = {k: schema.pop(k) for k in ("type", "properties", "required") if k in schema}
    return {**first, **schema}


def _private(os: Any) -> Any:
    def opener(path: str, flags: int) -> int:
        return os.open(path, flags, 0o600)

    return opener


def _describe(exc: BaseException) -> str:
    """One line for an exception, looking inside task-group exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, McpConfigError):
        return str(exc)
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "…"


def result_text(result: Any) -> str:
    """A CallToolResult as text: text content as is, other content summarised, never dropped."""
    parts: list[str] = []
    for item in getattr(result, "content", None) or []:
        kind = getattr(item, "type", "")
        if kind == "text":
            parts.append(item.text)
        elif kind in ("image", "audio"):
            size = len(item.data) * 3 // 4
            parts.append(f"[{kind} content: {item.mime_type}, about {size:,} bytes, not shown]")
        elif kind == "resource_link":
            parts.append(f"[resource link: {item.uri}" + (f" ({item.name})]" if item.name else "]"))
        elif kind == "resource":
            res = item.resource
            text = getattr(res, "text", None)
            if text is not None:
                parts.append(text)
            else:
                mime = getattr(res, "mime_type", None) or "binary"
                parts.append(f"[embedded resource {res.uri}: {mime}, not shown]")
        else:
            parts.append(f"[{kind or 'unknown'} content, not shown]")
    if not parts and getattr(result, "structured_content", None) is not None:
        import json

        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)

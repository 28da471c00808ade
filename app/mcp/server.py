"""`qwq-chat mcp serve`: the exact calculator and the sandboxed `python` tool for any MCP client.

Over stdio (the client starts us) or Streamable HTTP on a loopback address. The tools are the
chat's own (qwq_chat.app.tools), so an MCP client gets exactly what QwQ gets: sympy arithmetic
that never evaluates code, and Python run in the bubblewrap sandbox. Where the sandbox cannot
isolate code, the `python` tool refuses every call with the reason; it never runs code bare.
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Any

from qwq_chat.app.errors import UserError
from qwq_chat.app.tools.base import Tool, ToolError
from qwq_chat.app.tools.calculator import calculator_tool
from qwq_chat.app.tools.python_tool import python_tool

LOOPBACK_NAMES = {"localhost"}
INSTRUCTIONS = (
    "Tools from qwq-chat: `calculator` evaluates arithmetic and algebra exactly with sympy; "
    "`python` runs a Python 3 program in an isolated sandbox and returns what it prints."
)


def build_server() -> Any:
    """The MCP server with both tools (their names, descriptions and behaviour are the chat's)."""
    from mcp.server import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError as McpToolError
    from mcp.server.mcpserver.tools import Tool as McpTool

    calc, py = calculator_tool(), python_tool()

    def run(tool: Tool, arguments: dict[str, Any]) -> str:
        try:
            return tool.call(arguments)
        except ToolError as exc:  # the client gets our message as an error result
            raise McpToolError(str(exc)) from None

    def calculator(expression: str) -> str:
        return run(calc, {"expression": expression})

    def python(code: str) -> str:
        return run(py, {"code": code})

    tools = []
    for fn, tool in ((calculator, calc), (python, py)):
        exported = McpTool.from_function(
            fn, name=tool.name, description=tool.description, structured_output=False
        )
        exported.parameters = tool.parameters  # the chat's schema, argument descriptions included
        tools.append(exported)
    return MCPServer("qwq-chat", instructions=INSTRUCTIONS, tools=tools)


def check_loopback(host: str) -> None:
    """The HTTP transport has no authentication: it listens on this machine only."""
    if host in LOOPBACK_NAMES:
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise UserError(
        f"--host {host} is not a loopback address; `mcp serve` has no authentication and "
        "listens on this machine only (use 127.0.0.1)"
    )


def sandbox_warning() -> str | None:
    """Why `python` will refuse to run code here, or None when the sandbox isolates."""
    from qwq_chat.app.sandbox.runner import Sandbox, SandboxUnavailable

    try:
        Sandbox().check()
    except SandboxUnavailable as exc:
        return str(exc)
    return None


def serve(transport: str = "stdio", host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run until the client leaves (stdio) or Ctrl-C (http). Messages go to stderr only."""
    if transport not in ("stdio", "http"):
        raise UserError(f"--transport {transport!r}: use stdio or http")
    if transport == "http":
        check_loopback(host)
        if not 0 < port < 65536:
            raise UserError(f"--port {port} is not a TCP port: give a number from 1 to 65535")
    warning = sandbox_warning()
    if warning:
        print(f"qwq-chat mcp: the python tool will refuse to run code: {warning}", file=sys.stderr)
    server = build_server()
    if transport == "stdio":
        server.run()
    else:
        print(f"qwq-chat mcp: Streamable HTTP on http://{host}:{port}/mcp", file=sys.stderr)
        server.run("streamable-http", host=host, port=port)

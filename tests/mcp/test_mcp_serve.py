"""`qwq-chat mcp serve` answers the SDK's own MCP client over stdio and Streamable HTTP: both tools
listed, the calculator exact, Python run in the bubblewrap sandbox, and no code run at all where
the sandbox cannot isolate it."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_helpers import free_port, start_http_server

SERVE = [sys.executable, "-m", "qwq_chat.app", "mcp", "serve"]


def _sandbox_works() -> str | None:
    from qwq_chat.app.mcp.server import sandbox_warning

    return sandbox_warning()


async def _session_calls(streams: Any, calls: list[tuple[str, dict]]) -> tuple[list, list]:
    async with ClientSession(streams[0], streams[1]) as session:
        await session.initialize()
        tools = (await session.list_tools()).tools
        results = [await session.call_tool(name, args) for name, args in calls]
    return tools, results


def _over_stdio(calls: list[tuple[str, dict]], env: dict[str, str]) -> tuple[list, list]:
    async def run() -> tuple[list, list]:
        params = StdioServerParameters(command=SERVE[0], args=SERVE[1:], env=env)
        async with stdio_client(params) as streams:
            return await _session_calls(streams, calls)

    return asyncio.run(run())


def _text(result: Any) -> str:
    return "".join(c.text for c in result.content if c.type == "text")


def test_stdio_lists_both_tools_runs_the_calculator_and_python_in_the_sandbox() -> None:
    reason = _sandbox_works()
    if reason:
        pytest.skip(f"the sandbox cannot isolate code here: {reason}")
    calls = [("calculator", {"expression": "2**100 + 1/3"}),
             ("python", {"code": "import os\nprint(6 * 7, os.getuid())"}),
             ("calculator", {"expression": "1/0"})]  # fmt: skip
    tools, (calc, py, bad) = _over_stdio(calls, dict(os.environ))
    assert sorted(t.name for t in tools) == ["calculator", "python"]
    schema = next(t for t in tools if t.name == "python").input_schema
    assert schema["required"] == ["code"]
    assert not calc.is_error and _text(calc).startswith("3802951800684688204490109616129/3")
    assert not py.is_error and _text(py).split()[0] == "42"
    assert _text(py).split()[1] != str(os.getuid())  # a throw-away uid inside the sandbox
    assert bad.is_error and "undefined" in _text(bad)


def test_python_refuses_to_run_code_without_isolation(tmp_path: Path) -> None:
    """No bubblewrap on PATH: the calculator still works, python refuses and says why."""
    marker = tmp_path / "ran"
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    assert shutil.which("bwrap", path=env["PATH"]) is None
    code = f"open({str(marker)!r}, 'w').write('x')"
    tools, (py, calc) = _over_stdio(
        [("python", {"code": code}), ("calculator", {"expression": "6*7"})], env
    )
    assert sorted(t.name for t in tools) == ["calculator", "python"]
    assert py.is_error and "sandbox is unavailable" in _text(py)
    assert "bubblewrap is not installed" in _text(py)
    assert not marker.exists()
    assert _text(calc) == "42"


def test_streamable_http_on_loopback_only() -> None:
    port = free_port()
    process = start_http_server([*SERVE, "--transport", "http", "--port", str(port)], port)
    try:

        async def run() -> tuple[list, list]:
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as streams:
                return await _session_calls(streams, [("calculator", {"expression": "sqrt(8)"})])

        tools, (calc,) = asyncio.run(run())
    finally:
        process.terminate()
        process.wait(10)
    assert sorted(t.name for t in tools) == ["calculator", "python"]
    assert _text(calc).startswith("2*sqrt(2)")
    refused = subprocess.run([*SERVE, "--transport", "http", "--host", "0.0.0.0"],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2 and "not a loopback address" in refused.stderr

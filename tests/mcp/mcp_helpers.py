"""Helpers for the MCP tests: a scripted OpenAI-compatible model on 127.0.0.1 and real MCP servers.

The model server answers /v1/chat/completions with scripted SSE streams (one script per request,
each a function of the request, so a reply can quote the tool result it was sent); the MCP
servers are tests/mcp/fake_mcp_server.py, written with the `mcp` SDK, run over stdio or HTTP.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

SERVER_SCRIPT = Path(__file__).resolve().parent / "fake_mcp_server.py"
KEY_ENV = "QWQ_MCP_TEST_KEY"
Script = Callable[[dict[str, Any]], list[dict[str, Any]]]


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip


def calls_tool(name: str, arguments: dict[str, Any], reasoning: str = "I need a tool.") -> Script:
    """A turn that thinks, then emits QwQ's `<tool_call>` in its content."""
    body = json.dumps({"name": name, "arguments": arguments})

    def script(_: dict[str, Any]) -> list[dict[str, Any]]:
        return [chunk({"reasoning_content": reasoning}),
                chunk({"content": f"<tool_call>\n{body}\n</tool_call>"}, finish="stop")]  # fmt: skip

    return script


def answers_with_tool_result(prefix: str = "The tool said: ") -> Script:
    """A turn that answers by quoting the last tool message it was sent."""

    def script(request: dict[str, Any]) -> list[dict[str, Any]]:
        tool = [m for m in request["messages"] if m["role"] == "tool"][-1]["content"]
        return [chunk({"reasoning_content": "Got it."}),
                chunk({"content": prefix + tool[:200]}, finish="stop")]  # fmt: skip

    return script


class ScriptedModel:
    """An OpenAI-compatible server playing `scripts` in order; records each request body."""

    def __init__(self) -> None:
        self.scripts: list[Script] = []
        self.requests: list[dict[str, Any]] = []
        self.url = ""

    async def completions(self, request: Request) -> StreamingResponse:
        body = await request.json()
        self.requests.append(body)
        chunks = self.scripts.pop(0)(body)

        def events() -> Iterator[str]:
            for item in chunks:
                yield f"data: {json.dumps(item)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    def settings(self, **extra: Any) -> dict[str, Any]:
        """load_settings() overrides for the openai backend pointing here."""
        return {"backend": "openai", "base_url": self.url, "model": "qwq-32b",
                "openai": {"api_key_env": KEY_ENV}, "tools": [], **extra}  # fmt: skip


def start_model_server() -> tuple[ScriptedModel, Callable[[], None]]:
    model = ScriptedModel()
    app = Starlette(routes=[Route("/v1/chat/completions", model.completions, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    model.url = f"http://127.0.0.1:{port}/v1"

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return model, stop


def stdio_server(mode: str, log: Path | None = None, **extra: Any) -> dict[str, Any]:
    """A `[mcp.servers.NAME]` entry that starts the fake server over stdio."""
    args = [str(SERVER_SCRIPT), mode] + (["--log", str(log)] if log else [])
    return {"command": sys.executable, "args": args, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_http_server(argv: list[str], port: int, timeout_s: float = 30) -> subprocess.Popen:
    """Start an MCP server process listening on 127.0.0.1:`port` and wait until it accepts."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start listening")


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- fixtures (imported by the test modules that use them) -----------------------------------------
@pytest.fixture(scope="module")
def model_server() -> Iterator[ScriptedModel]:
    model, stop = start_model_server()
    yield model
    stop()


@pytest.fixture
def model(model_server: ScriptedModel, monkeypatch: pytest.MonkeyPatch) -> ScriptedModel:
    """The scripted model, its scripts and requests cleared, its API key in the environment."""
    monkeypatch.setenv(KEY_ENV, "sk-test")
    model_server.scripts.clear()
    model_server.requests.clear()
    return model_server


@pytest.fixture(scope="module")
def http_mcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The fake MCP server ("ok" mode) over Streamable HTTP: (its URL, its call log)."""
    log = tmp_path_factory.mktemp("http-mcp") / "calls.jsonl"
    port = free_port()
    argv = [sys.executable, str(SERVER_SCRIPT), "ok", "--http", str(port), "--log", str(log)]
    process = start_http_server(argv, port)
    yield f"http://127.0.0.1:{port}/mcp", log
    process.terminate()
    process.wait(10)

"""Faulty MCP servers (real SDK servers over stdio): one exits at start, one hangs past the
timeout, one crashes mid-call, one returns 10 MB, one writes garbage instead of JSON-RPC. Each is
a clear tool error the model reads and a notice the user sees; the chat goes on and nothing is
lost from the store."""

from __future__ import annotations

import json
import time

from mcp_helpers import stdio_server
from qwq_chat.app.config import load_settings
from qwq_chat.app.events import Done, ToolResult
from qwq_chat.app.session import Session
from qwq_chat.app.store import open_store
from qwq_chat.app.tools.approvals import ApprovalRequest
from qwq_chat.app.tools.toolbox import build_toolbox
from scripted_engine import ScriptedEngine, qwq_turn


def call(name: str) -> list[str]:
    body = json.dumps({"name": name, "arguments": {"key": "alpha"}})
    return qwq_turn(f"Let me call {name}.", f"<tool_call>\n{body}\n</tool_call>")


def test_faulty_servers_become_tool_errors_and_the_chat_continues() -> None:
    servers = {
        "dead": stdio_server("exit"),
        "hang": stdio_server("hang", timeout_s=1.5),
        "crash": stdio_server("crash"),
        "big": stdio_server("big"),
        "junk": stdio_server("garbage", timeout_s=1.5),
    }
    settings = load_settings(tools=[], mcp={"servers": servers})
    asked: list[ApprovalRequest] = []
    notices: list[str] = []
    toolbox = build_toolbox(settings, approver=lambda r: asked.append(r) or "once")
    toolbox.on_notice = notices.append
    engine = ScriptedEngine(
        [call("lookup"), qwq_turn("It hung.", "The lookup timed out."),
         call("crash__lookup"), qwq_turn("It crashed.", "That server crashed."),
         call("big__lookup"), qwq_turn("Too big.", "The result was too large."),
         call("crash__lookup"), qwq_turn("Still down.", "Still down."),
         call("junk__lookup"), qwq_turn("Garbage.", "That server sent garbage.")]
    )  # fmt: skip
    store = open_store()
    session = Session(store, engine, tools=toolbox)
    try:
        toolbox.mcp.wait_ready()
        dead = toolbox.mcp.servers["dead"]
        assert dead.status == "failed" and "refusing to start" in dead.error  # its stderr, shown
        assert any(r["server"] == "dead" and r["status"] == "failed" for r in toolbox.status())
        results: list[ToolResult] = []
        for question in ("one", "two", "three", "four", "five"):
            started = time.monotonic()
            events = list(session.send(question))
            assert time.monotonic() - started < 30  # never stuck
            assert events[-1] == Done(finish_reason="stop")  # the chat goes on after each fault
            results += [e for e in events if isinstance(e, ToolResult)]
    finally:
        toolbox.close()
    hang, crash, big, again, junk = results
    assert hang.is_error and "did not answer within 1.5 s" in hang.content
    assert crash.is_error and "crashed while running lookup" in crash.content
    assert big.is_error and "returned 10,000,000 characters" in big.content
    assert "max_result_chars" in big.content and len(big.content) < 1000
    assert again.is_error and "'crash' is not running" in again.content
    assert junk.is_error and "did not answer within 1.5 s" in junk.content  # not JSON-RPC
    # the model read each error as the tool message of its next request
    seen = [c["messages"][-1] for c in engine.calls if c["messages"][-1]["role"] == "tool"]
    assert [m["content"] for m in seen] == [r.content for r in results]
    # the user got a notice for the server that did not start and for each failed call (the
    # fourth call is the model's mistake: the tool had gone, and the model was told why)
    start = [n for n in notices if n.startswith("MCP server dead:")]
    assert len(start) == 1 and "refusing to start" in start[0]
    calls = [n for n in notices if n not in start]
    assert len(calls) == 4 and "did not answer" in calls[0] and "crashed" in calls[1]
    # nothing lost: five user turns, each with its call, its error and its answer
    stored = store.messages(session.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant", "tool", "assistant"] * 5
    assert [m.content for m in stored if m.role == "tool"] == [r.content for r in results]
    assert stored[-1].content == "That server sent garbage." and stored[-1].finish_reason == "stop"
